"""Are the shared services there? The database (always) and Redis (with `redis_url`) are probed every
`cluster.health_interval_s`; `/readyz` answers 503 with the reasons while one is unreachable, and new calls are
refused with a spoken apology meanwhile. Calls already talking to the bot go on: nothing on their path waits for
either service (the recorder buffers and retries its writes). Recovery is automatic: the next good probe clears it.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.tasks import cancel_and_wait

log = logging.getLogger("hotline.health")


class Health:
    def __init__(self, *, store: Any, presence: Any = None, interval_s: float = 1.0, timeout_s: float = 1.0) -> None:
        self.store = store
        self.presence = presence  # server.cluster.presence.Presence, whose heartbeat says whether Redis answers
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.db_error: str | None = None
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    def reasons(self) -> list[str]:
        out = []
        if self.db_error is not None:
            out.append(f"database unreachable: {self.db_error}")
        if self.presence is not None and not self.presence.redis_ok:
            out.append(f"redis unreachable: {self.presence.redis_error}")
        return out

    @property
    def ok(self) -> bool:
        return not self.reasons()

    async def probe_database(self) -> bool:
        try:
            await asyncio.wait_for(self.store.ping(), self.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to answer is "unreachable" for readiness
            # Two failed probes in a row: one slow answer on a loaded machine is not an outage.
            self._failures += 1
            if self._failures >= 2:
                if self.db_error is None:
                    log.error("database unreachable", extra={"error": type(exc).__name__})
                self.db_error = type(exc).__name__  # the name only: /readyz is public, the text may name hosts
            return False
        if self.db_error is not None:
            log.info("database reachable again")
        self.db_error, self._failures = None, 0
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="health")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await self.probe_database()
            await asyncio.sleep(self.interval_s)
