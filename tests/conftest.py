"""Shared fixtures. Models load once per test session (they are the slow part)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "recordings_fixtures"


@pytest.fixture(scope="session")
def voice_settings():
    from voice.settings import VoiceSettings

    return VoiceSettings()


@pytest.fixture(scope="session")
def recognizer(voice_settings):
    from voice.asr import build_recognizer

    rec = build_recognizer(voice_settings, engine="faster-whisper")
    rec.warm_up()
    return rec


@pytest.fixture(scope="session")
def openai_recognizer(voice_settings):
    from voice.asr import build_recognizer

    return build_recognizer(voice_settings, engine="openai-whisper")


@pytest.fixture(scope="session")
def manifest():
    from voice.bench import load_manifest

    return load_manifest(FIXTURES)


def require_tool(path: str | Path | None, what: str, install: str) -> None:
    """A tool the suite needs is missing: fail with what to do (never skip: a skipped test is not a passed one)."""
    if path is None or not Path(path).exists():
        pytest.fail(f"{what} is not installed: {install} (setup.sh installs it)", pytrace=False)


def espeak_say(text: str, voice: str, tmp_path: Path) -> np.ndarray:
    """Synthesise with espeak-ng for languages no real recording covers here (Korean, French)."""
    from voice.audio import decode_file

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: run setup.sh (apt-get install espeak-ng)")
    out = tmp_path / f"{voice}.wav"
    subprocess.run([exe, "-v", voice, "-w", str(out), text], check=True, capture_output=True, timeout=60)
    return decode_file(out)


PG_ADMIN = dict(host="127.0.0.1", port=5432, user="postgres", database="test")


def _pg_admin(sql: str) -> None:
    """Run one statement as the PostgreSQL admin, in a thread of its own: a fixture may be asked for from inside
    a running event loop (async fixtures), where asyncio.run cannot start another."""

    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(**PG_ADMIN, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


# The one optional case of the suite (README, "Tests"): HOTLINE_TEST_ALLOW_SKIP_PG=1 lets a developer without a local
# PostgreSQL skip its tests. Everywhere else, CI included, a PostgreSQL that cannot be reached fails them: a run that
# skipped them would have tested SQLite only.
ALLOW_SKIP_PG = os.environ.get("HOTLINE_TEST_ALLOW_SKIP_PG") == "1"


def _fresh_pg_database():
    """Create a fresh PostgreSQL database, yield its URL, drop it afterwards."""
    name = f"hotline_test_{uuid.uuid4().hex[:12]}"
    message = None
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is reported, with what to do
        message = (f"PostgreSQL is not reachable at {PG_ADMIN['host']}:{PG_ADMIN['port']} as user postgres "
                   f"({type(exc).__name__}: {exc}); start it (.ci/run does), or set HOTLINE_TEST_ALLOW_SKIP_PG=1 to "
                   "skip the PostgreSQL tests")
    if message and ALLOW_SKIP_PG:
        pytest.skip(message)
    if message:
        pytest.fail(message, pytrace=False)
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def pg_url():
    """A fresh PostgreSQL database for this test module, dropped afterwards."""
    yield from _fresh_pg_database()


@pytest.fixture
def fresh_pg_url():
    """A fresh PostgreSQL database for this one test (for what must start from an empty database)."""
    yield from _fresh_pg_database()


REDIS_URL_ENV = "HOTLINE_TEST_REDIS_URL"


@pytest.fixture
def redis_url() -> str:
    """The Redis the `redis` tests share (keys under `redis_prefix`). Unreachable: the test FAILS with the reason;
    a missing service must never pass as a skip."""
    import os

    import redis

    url = os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/1")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Redis is not reachable at {url} ({type(exc).__name__}: {exc}): start redis-server or set "
                    f"{REDIS_URL_ENV}; deselect these tests with -m 'not redis'", pytrace=False)
    return url


@pytest.fixture
def redis_prefix(redis_url: str):
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    import redis

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
