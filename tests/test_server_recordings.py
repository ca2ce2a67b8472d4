"""Recordings in shared storage (server/store/recordings.py): with the database as the place, a supervisor on one
process plays a call that another process recorded."""
from __future__ import annotations

import asyncio
import io
import wave

import httpx
import pytest

from fakes import fake_components
from people_helpers import add_users, build_app, login, make_settings, serve
from server.settings import PeopleSettings
from server.store import Store
from server.store.recordings import DatabaseRecordings, FolderRecordings
from test_server_calls import ask, greeted
from wsclient import NativeCaller


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "folder"])
async def test_save_load_and_refuse_bad_ids(kind, tmp_path, request):
    store = None
    if kind == "folder":
        recordings = FolderRecordings(tmp_path / "rec")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}" if kind == "sqlite" else request.getfixturevalue("pg_url")
        store = Store(url=url)
        await store.migrate()
        recordings = DatabaseRecordings(store)
    assert await recordings.load("abc123") is None and not await recordings.exists("abc123")
    await recordings.save("abc123", b"RIFF-one")
    await recordings.save("abc123", b"RIFF-two")  # saved again: replaced, not duplicated
    assert await recordings.load("abc123") == b"RIFF-two" and await recordings.exists("abc123")
    for bad in ("../etc/passwd", "a b", "", "x" * 65):
        assert await recordings.load(bad) is None and not await recordings.exists(bad)
        with pytest.raises(ValueError):
            await recordings.save(bad, b"x")
    if store is not None:
        await store.close()


def test_auto_is_the_database_with_redis_and_the_folder_without(tmp_path):
    from server.people.service import recordings_store

    auto = PeopleSettings()
    assert isinstance(recordings_store(auto, store=None, folder=tmp_path, shared=True), DatabaseRecordings)
    assert isinstance(recordings_store(auto, store=None, folder=tmp_path, shared=False), FolderRecordings)
    folder = PeopleSettings(recordings_storage="folder")
    assert isinstance(recordings_store(folder, store=None, folder=tmp_path, shared=True), FolderRecordings)
    assert recordings_store(PeopleSettings(recordings=False), store=None, folder=tmp_path, shared=True) is None


@pytest.mark.postgres
async def test_a_supervisor_on_another_process_plays_the_recording(pg_url, tmp_path):
    people = PeopleSettings(recordings_storage="database")
    a_settings = make_settings(tmp_path / "a", db_url=pg_url, people=people)
    b_settings = make_settings(tmp_path / "b", db_url=pg_url, people=people)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    add_users(a_settings, [("sam", "supervisor", "")])
    app_a = build_app(a_settings, components=fake_components(script=[("work permit", "en")]))
    app_b = build_app(b_settings, components=fake_components())
    with serve(app_a, a_settings) as base_a, serve(app_b, b_settings) as base_b:
        caller = await NativeCaller.connect(base_a.replace("http://", "ws://") + "/ws/call")
        await caller.send_json({"event": "call.start", "language": "en"})
        call_id = (await caller.wait_event("call.started"))["call_id"]
        await greeted(caller)
        await ask(caller)
        await caller.wait_event("audio.end", count=3)
        await caller.send_json({"event": "hangup"})
        await caller.wait_event("call.ended")
        token = login(base_b, "sam")
        async with httpx.AsyncClient(base_url=base_b, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            for _ in range(100):  # written as the call's connection closes on A
                wav = await http.get(f"/api/calls/{call_id}/recording")
                if wav.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
            with wave.open(io.BytesIO(wav.content)) as w:
                assert w.getframerate() == 16000 and w.getnframes() > 8000
            assert (await http.get(f"/api/calls/{call_id}")).json()["recording"] is True
    assert not (tmp_path / "a" / "recordings").exists(), "nothing written to the process's own folder"


async def _age(store: Store, call_id: str, days: float) -> None:
    import datetime as dt

    from sqlalchemy import update

    from server.store.models import RecordingRow, utcnow

    async with store.sessions.begin() as s:
        await s.execute(update(RecordingRow).where(RecordingRow.call_id == call_id)
                        .values(created_at=utcnow() - dt.timedelta(days=days)))


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_retention_deletes_old_recordings_kept_in_the_database(kind, tmp_path, request):
    import time

    from server.people.retention import prune_once

    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}" if kind == "sqlite" else request.getfixturevalue("pg_url")
    store = Store(url=url)
    await store.migrate()
    recordings = DatabaseRecordings(store)
    for call_id in ("old1", "old2", "new1"):
        await recordings.save(call_id, f"RIFF-{call_id}".encode())
    await _age(store, "old1", 10)
    await _age(store, "old2", 8)
    await _age(store, "new1", 6)
    now = time.time()
    assert await prune_once(None, max_age_s=None, now=now, database=recordings) == 0  # None: kept for ever
    assert await prune_once(None, max_age_s=7 * 86400, now=now, database=recordings) == 2
    assert not await recordings.exists("old1") and not await recordings.exists("old2")
    assert await recordings.load("new1") == b"RIFF-new1"
    assert await prune_once(None, max_age_s=7 * 86400, now=now, database=recordings) == 0
    await store.close()


async def test_the_service_prunes_database_recordings_at_start_up(tmp_path):
    """The wiring: with recordings in the database, the retention sweep the service starts reaches them."""
    people = PeopleSettings(recordings_storage="database", recordings_retention_days=30)
    settings = make_settings(tmp_path, people=people)
    store = Store(url=settings.db_url)
    await store.migrate()
    recordings = DatabaseRecordings(store)
    await recordings.save("expired", b"RIFF-expired")
    await recordings.save("recent", b"RIFF-recent")
    await _age(store, "expired", 31)
    await _age(store, "recent", 29)
    with serve(build_app(settings, components=fake_components()), settings):
        for _ in range(100):  # the first sweep runs as the service starts
            if not await recordings.exists("expired"):
                break
            await asyncio.sleep(0.05)
        assert not await recordings.exists("expired")
        assert await recordings.exists("recent")
    await store.close()
