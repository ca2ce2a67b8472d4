"""Recordings retention: files older than `recordings_retention_days` are deleted at start-up and every hour.

A recording is caller data; keeping it for ever is neither needed nor allowed by most data-protection rules.
`prune_recordings` is pure file-system work with `now` passed in, so the test runs it on a fixed clock.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

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


async def retention_loop(folder: Path | None, *, max_age_s: float | None, every_s: float = PRUNE_EVERY_S) -> None:
    """Prune now, then every `every_s` seconds until cancelled."""
    while True:
        try:
            removed = await asyncio.to_thread(prune_recordings, folder, max_age_s=max_age_s, now=time.time())
            if removed:
                log.info("old recordings deleted", extra={"count": removed})
        except Exception:  # a failed sweep is retried at the next one
            log.exception("recordings retention sweep failed")
        await asyncio.sleep(every_s)
