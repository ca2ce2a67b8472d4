"""Recordings retention: recordings older than `recordings_retention_days` are deleted at start-up and every hour,
wherever they are kept: files in the recordings folder, rows in the database (server/store/recordings.py).

A recording is caller data; keeping it for ever is neither needed nor allowed by most data-protection rules.
`prune_recordings` is pure file-system work and `database_cutoff` pure arithmetic, both with `now` passed in, so the
tests run them on a fixed clock.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("hotline.people.retention")

PRUNE_EVERY_S = 3600.0


def prune_recordings(folder: Path | None, *, max_age_s: float | None, now: float) -> int:
    """Delete recordings (and half-written `.wav.part` files) last modified more than `max_age_s` ago."""
    if folder is None or max_age_s is None or not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if not (path.name.endswith(".wav") or path.name.endswith(".wav.part")) or not path.is_file():
            continue
        try:
            if now - path.stat().st_mtime > max_age_s:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def database_cutoff(*, max_age_s: float | None, now: float) -> dt.datetime | None:
    """Recordings in the database saved before this time are past their retention (None: kept for ever)."""
    if max_age_s is None:
        return None
    return dt.datetime.fromtimestamp(now - max_age_s, dt.timezone.utc)


async def prune_once(folder: Path | None, *, max_age_s: float | None, now: float, database: Any = None) -> int:
    """One sweep: the folder's files, then (when recordings are kept there) the database's rows. A failure of one
    does not stop the other; it is logged and the next sweep tries again."""
    removed = 0
    try:
        removed += await asyncio.to_thread(prune_recordings, folder, max_age_s=max_age_s, now=now)
    except Exception:
        log.exception("recordings retention sweep of the folder failed")
    before = database_cutoff(max_age_s=max_age_s, now=now)
    if database is not None and before is not None:
        try:
            removed += await database.prune(before=before)
        except Exception:
            log.exception("recordings retention sweep of the database failed")
    return removed


async def retention_loop(folder: Path | None, *, max_age_s: float | None, every_s: float = PRUNE_EVERY_S,
                         database: Any = None) -> None:
    """Prune now, then every `every_s` seconds until cancelled. `database`: the DatabaseRecordings, when
    recordings are kept in the database."""
    while True:
        removed = await prune_once(folder, max_age_s=max_age_s, now=time.time(), database=database)
        if removed:
            log.info("old recordings deleted", extra={"count": removed})
        await asyncio.sleep(every_s)
