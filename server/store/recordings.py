"""Where call recordings are kept: a folder (one WAV per call) or the database (one row per call).

With several processes a supervisor on any of them must be able to play any call, so the recording must be in
shared storage: the database (the default with Redis: nothing else to share) or a folder every process mounts
(`people.recordings_storage: folder` with `people.recordings_dir` on a shared file system). One process alone keeps
the folder beside its SQLite database, as before.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from server.store.models import RecordingRow, utcnow

_CALL_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


def valid_call_id(call_id: str) -> bool:
    return bool(_CALL_ID_RE.match(call_id or ""))


class RecordingStore(Protocol):
    where: str  # "folder" | "database", for /readyz and the docs

    async def save(self, call_id: str, wav: bytes) -> None: ...

    async def load(self, call_id: str) -> bytes | None: ...

    async def exists(self, call_id: str) -> bool: ...


class FolderRecordings:
    where = "folder"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, call_id: str) -> Path | None:
        return self.folder / f"{call_id}.wav" if valid_call_id(call_id) else None

    def _write(self, path: Path, wav: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".wav.part")
        tmp.write_bytes(wav)
        tmp.replace(path)  # a reader never sees half a file

    async def save(self, call_id: str, wav: bytes) -> None:
        path = self._path(call_id)
        if path is None:
            raise ValueError("bad call id")
        await asyncio.to_thread(self._write, path, wav)

    async def load(self, call_id: str) -> bytes | None:
        path = self._path(call_id)
        if path is None or not path.is_file():
            return None
        return await asyncio.to_thread(path.read_bytes)

    async def exists(self, call_id: str) -> bool:
        path = self._path(call_id)
        return bool(path is not None and path.is_file())


class DatabaseRecordings:
    where = "database"

    def __init__(self, store: object) -> None:
        self.store = store  # anything with `.sessions`: the Store, or the people side's handle on it

    async def save(self, call_id: str, wav: bytes) -> None:
        if not valid_call_id(call_id):
            raise ValueError("bad call id")
        async with self.store.sessions.begin() as s:  # type: ignore[attr-defined]
            insert = postgresql.insert if s.bind.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(RecordingRow).values(call_id=call_id, wav=wav, size=len(wav), created_at=utcnow())
            await s.execute(stmt.on_conflict_do_update(index_elements=[RecordingRow.call_id],
                                                       set_={"wav": stmt.excluded.wav, "size": stmt.excluded.size}))

    async def load(self, call_id: str) -> bytes | None:
        if not valid_call_id(call_id):
            return None
        async with self.store.sessions() as s:  # type: ignore[attr-defined]
            return (await s.execute(select(RecordingRow.wav).where(RecordingRow.call_id == call_id))).scalar()

    async def exists(self, call_id: str) -> bool:
        if not valid_call_id(call_id):
            return False
        async with self.store.sessions() as s:  # type: ignore[attr-defined]
            found = await s.execute(select(RecordingRow.call_id).where(RecordingRow.call_id == call_id))
            return found.scalar() is not None

    async def prune(self, *, before: dt.datetime) -> int:
        """Delete the recordings saved before `before` (retention: server/people/retention.py); how many went."""
        async with self.store.sessions.begin() as s:  # type: ignore[attr-defined]
            result = await s.execute(delete(RecordingRow).where(RecordingRow.created_at < before))
            return int(result.rowcount or 0)
