"""Helpers for the people tests (agent queue runtime, consoles, access): an app with the people side installed,
accounts, tokens and a console websocket client."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import websockets

from server.app import create_app
from server.settings import Settings

PASSWORD = "correct horse battery staple"


def people_settings_for(tmp_path: Path, **overrides: Any) -> Any:
    from server.settings import PeopleSettings

    return PeopleSettings(**overrides)  # recordings beside the test's database: tmp_path/recordings


def make_settings(tmp_path: Path, *, people: Any = None, **overrides: Any) -> Settings:
    base = dict(db_url=f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}", pace_audio=False, start_timeout_s=0.3,
                no_input_s=60.0, log_json=False, log_level="WARNING")
    base.update(overrides)
    if "people" in Settings.model_fields:
        base["people"] = people or people_settings_for(tmp_path)
    return Settings(**base)


def build_app(settings: Settings, *, components: Any = None) -> Any:
    """The real app with the people side: installed by create_app (the server/app.py hook, from settings.people),
    or here while that hook is not in place yet."""
    from server.people.service import install_people

    app = create_app(settings, components=components, configure_logs=False)
    if not hasattr(app.state, "people"):
        folder = Path(settings.db_url.split("///", 1)[1]).parent
        install_people(app, settings, people=people_settings_for(folder))
    return app


def serve(app: Any, settings: Settings, *, ready_timeout: float = 300.0):
    """Yields http://127.0.0.1:PORT once /readyz is 200 (tests/serving.py's launcher)."""
    from serving import serve_app

    return serve_app(app, settings, ready_timeout_s=ready_timeout)


def add_users(settings: Settings, users: list[tuple[str, str, str]], *, dev: bool = False) -> None:
    """(name, role, languages) accounts with PASSWORD, straight into the store (migrated first)."""
    from server.people.auth import AuthService
    from server.store import Store

    async def go() -> None:
        store = Store(url=settings.db_url)
        await store.migrate()
        auth = AuthService(store=store)
        for name, role, langs in users:
            await auth.add_user(name=name, role=role, password=PASSWORD, languages=langs or None, dev=dev)
        await store.close()

    # In a thread of its own: the async tests call this from inside their event loop. Its failure (an account that
    # exists already, say) is the test's failure, not a warning printed at the end of the run.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


def login(base: str, name: str, password: str = PASSWORD) -> str:
    r = httpx.post(f"{base}/api/auth/login", json={"name": name, "password": password}, timeout=10)
    r.raise_for_status()
    return r.json()["token"]


class Console:
    """A console websocket client (agent or supervisor): records events and binary frames."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.frames: list[bytes] = []  # the binary messages one by one (listen-in: each starts with its channel)
        self._changed = asyncio.Event()
        self.closed = False
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, base: str, path: str, token: str) -> "Console":
        """As the consoles do: a one-time ticket for the session token, then the websocket with `?ticket=`."""
        async with httpx.AsyncClient() as client:
            r = await client.post(f"{base}/api/ws-ticket", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        ticket = r.json()["ticket"] if r.status_code == 200 else "invalid"
        url = base.replace("http://", "ws://") + f"{path}?ticket={ticket}"
        return cls(await websockets.connect(url, max_size=None))

    async def _read(self) -> None:
        try:
            async for m in self.ws:
                if isinstance(m, bytes):
                    self.audio += m
                    self.frames.append(m)
                else:
                    self.events.append(json.loads(m))
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._changed.set()

    async def send(self, **msg: Any) -> None:
        await self.ws.send(json.dumps(msg))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    async def wait(self, predicate: Callable[["Console"], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if self.closed:
                raise AssertionError(f"console closed; events: {[e.get('event') for e in self.events][-20:]}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; events: {[(e.get('event'), e.get('code')) for e in self.events][-20:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_event(self, name: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        return await self.wait(lambda c: next((e for e in c.named(name) if all(e.get(k) == v for k, v in match.items())), None),
                               timeout)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._task, return_exceptions=True)
