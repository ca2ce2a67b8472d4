"""PostgreSQL or Redis unreachable, then back: /readyz says 503 with the reason, new callers hear an apology and get
an `error` event, a call already talking to the bot goes on, nothing it stored is lost, and the service recovers by
itself. PostgreSQL is cut with a TCP proxy in front of the machine's server; Redis is a redis-server of the test's
own, stopped and started again on its port."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from cluster_helpers import RedisServer, TcpProxy, unique_prefix
from fakes import fake_components
from serving import running_server
from server.settings import Settings
from server.store import Store
from test_server_calls import ask, greeted
from wsclient import NativeCaller

FAST = dict(health_interval_s=0.2, probe_timeout_s=0.5, heartbeat_interval_s=0.2, heartbeat_ttl_s=1.0)


async def readyz(http_base: str) -> tuple[int, dict]:
    async with httpx.AsyncClient(timeout=3) as client:
        r = await client.get(f"{http_base}/readyz")
        return r.status_code, r.json()


async def until_ready_is(http_base: str, status: int, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            code, body = await readyz(http_base)
        except httpx.ConnectError:  # not listening yet
            code, body = 0, {}
        if code == status and body.get("status") != "loading":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz stayed {code} {body}")
        await asyncio.sleep(0.1)


async def refused_call(url: str, language: str) -> NativeCaller:
    caller = await NativeCaller.connect(f"{url}/ws/call")
    await caller.send_json({"event": "call.start", "language": language})
    error = await caller.wait_event("error")
    assert error["code"] == "service_unavailable"
    starts = [await caller.wait_event("audio.start", count=i) for i in (1, 2)]
    assert [s["language"] for s in starts] == [language, "en" if language == "zh" else "zh"]
    ended = await caller.wait_event("call.ended", timeout=15)
    assert (ended["state"], ended["reason"]) == ("error", "service_unavailable")
    assert (await caller.wait_closed())[0] == 1013
    assert len(caller.audio) > 0, "the apology is spoken"
    return caller


@pytest.mark.postgres
async def test_postgres_away_and_back(pg_url, tmp_path):
    proxy = TcpProxy(("127.0.0.1", 5432))
    db_url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    settings = Settings(db_url=db_url, pace_audio=False, start_timeout_s=0.3, no_input_s=60.0, log_json=False,
                        cluster=FAST)
    script = [("how do I get a work permit", "en"), ("and how long does it take", "en"), ("thanks", "en")]
    try:
        with running_server(settings, components=fake_components(script=script)) as (url, app):
            http = url.replace("ws://", "http://")
            caller = await NativeCaller.connect(f"{url}/ws/call")
            await caller.send_json({"event": "call.start", "language": "en"})
            started = await caller.wait_event("call.started")
            await greeted(caller)
            await ask(caller)
            await caller.wait_event("answer", count=1)

            proxy.cut()
            body = await until_ready_is(http, 503)
            assert body["status"] == "unavailable" and body["reasons"][0].startswith("database unreachable")
            # The call in progress goes on with the bot while the database is away.
            await ask(caller)
            second = await caller.wait_event("answer", count=2, timeout=15)
            assert second["route"] == "answer"
            await refused_call(url, "zh")

            proxy.restore()
            await until_ready_is(http, 200, timeout=15)
            await ask(caller)
            await caller.wait_event("answer", count=3, timeout=15)
            await caller.send_json({"event": "hangup"})
            await caller.wait_event("call.ended")
            fresh = await NativeCaller.connect(f"{url}/ws/call")  # new calls are taken again
            await fresh.send_json({"event": "call.start", "language": "en"})
            assert (await fresh.wait_event("call.started"))["call_id"]
            assert not fresh.named("error")
            await fresh.send_json({"event": "hangup"})
            await fresh.wait_event("call.ended")
    finally:
        proxy.close()
    store = Store(url=pg_url)
    try:
        call = await store.get_call(started["call_id"])
        turns = await store.turns(started["call_id"])
        assert (call.state, call.reason) == ("caller_hangup", "hangup")
        # Every turn of the call is stored, including those spoken while the database was away.
        assert [t.text for t in turns if t.speaker == "caller"] == [s for s, _ in script]
        assert len([t for t in turns if t.kind == "answer"]) == 3
        assert [t.seq for t in turns] == sorted(t.seq for t in turns)
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_away_and_back(tmp_path):
    redis = RedisServer(tmp_path)
    settings = Settings(db_url=f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}", redis_url=redis.url, pace_audio=False,
                        start_timeout_s=0.3, no_input_s=60.0, log_json=False,
                        redis_prefix=unique_prefix(), cluster=FAST)
    try:
        with running_server(settings, components=fake_components(script=[("hello", "en"), ("work permit", "en")])) \
                as (url, app):
            http = url.replace("ws://", "http://")
            await until_ready_is(http, 200)
            caller = await NativeCaller.connect(f"{url}/ws/call")
            await caller.send_json({"event": "call.start", "language": "en"})
            await greeted(caller)
            redis.stop()
            body = await until_ready_is(http, 503)
            assert body["reasons"][0].startswith("redis unreachable")
            await refused_call(url, "en")
            await ask(caller)
            await caller.wait_event("answer", timeout=15)  # the bot goes on without Redis
            redis.start()
            await until_ready_is(http, 200, timeout=15)
            assert app.state.presence.redis_ok
            await caller.send_json({"event": "hangup"})
            await caller.wait_event("call.ended")
    finally:
        redis.stop()


def test_a_closed_redis_port_at_start_refuses_to_start_with_the_reason(tmp_path):
    """At start-up an unreachable Redis is fatal, with a clear message (the shared queue cannot be joined; a
    supervisor such as systemd starts the process again); once running, an outage is a 503, not an exit."""
    from fastapi.testclient import TestClient

    from cluster_helpers import free_port
    from server.app import create_app

    settings = Settings(db_url=f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}",
                        redis_url=f"redis://127.0.0.1:{free_port()}/0", log_json=False, cluster=FAST)
    app = create_app(settings, components=fake_components(), configure_logs=False)
    with pytest.raises(Exception, match="Redis is not reachable"):
        with TestClient(app):
            pass
