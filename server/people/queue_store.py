"""Which QueueStore a process uses, chosen once from the settings, and the process's identity in the queue.

Built by create_app (server/app.py) and passed to install_people: nothing is swapped later. The in-process store
is the default and needs nothing installed; `redis_url` (hotline serve --redis, HOTLINE_REDIS_URL) shares the queue
with every process that uses the same Redis database and `redis_prefix`.
"""
from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from routing.queue import AcdSettings, InProcessQueueStore, QueueStore


def new_process_id() -> str:
    """hostname:pid:random. The random part tells apart two lives of one pid (a restarted process must not be
    taken for its dead predecessor, whose calls and consoles the others clean up)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def make_queue_store(settings: Any, *, process_id: str, acd: AcdSettings | None = None) -> QueueStore:
    acd = acd or settings.people.acd
    if getattr(settings, "redis_url", None):
        from server.people.queue_redis import RedisQueueStore

        # No connection yet: it opens on first use (start-up checks it, server/people/service.py).
        return RedisQueueStore(url=settings.redis_url, prefix=settings.redis_prefix, settings=acd, process_id=process_id)
    return InProcessQueueStore(settings=acd, process_id=process_id)
