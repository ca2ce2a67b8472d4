"""The consoles' side of the hardening: no token or search in any log line, one-time websocket tickets, sessions
that end close their consoles at once, throttled and audited sign-in with scrypt off the event loop, and account
management (disable, enable, reset password, revoke) by route and command."""
from __future__ import annotations

import logging
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from fakes import fake_components
from people_helpers import PASSWORD, Console, add_users, build_app, login, make_settings, serve


@pytest.fixture()
def served(tmp_path):
    settings = make_settings(tmp_path, people=None)
    add_users(settings, [("mei", "agent", "en"), ("sam", "supervisor", ""), ("root", "admin", "")])
    app = build_app(settings, components=fake_components())
    with serve(app, settings, ready_timeout=60) as base:
        yield base, app, settings


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_ticket_or_search_reaches_the_logs(served, caplog):
    base, app, _ = served
    caplog.set_level(logging.DEBUG)
    token = login(base, "sam")
    console = await Console.connect(base, "/ws/supervisor", token)
    await console.wait_event("hello")
    httpx.get(f"{base}/api/calls", params={"q": "13812345678"}, headers=_h(token))
    await console.close()
    # A console that tries the long-lived token in the URL is refused, and that line is redacted too.
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(base.replace("http", "ws") + f"/ws/supervisor?token={token}")
    # The server's lines (the test's own clients, httpx and websockets, log their URLs at DEBUG themselves).
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("uvicorn", "hotline", "server")))
    assert "WebSocket" in text, "uvicorn's websocket lines are logged (and redacted)"
    assert token not in text and "13812345678" not in text and "ticket=" not in text


async def test_tickets_are_one_time_and_short_lived(served):
    base, app, _ = served
    token = login(base, "sam")
    ws_url = base.replace("http", "ws") + "/ws/supervisor"
    r = httpx.post(f"{base}/api/ws-ticket", headers=_h(token))
    assert r.status_code == 200 and r.json()["expires_in_s"] <= 60
    ticket = r.json()["ticket"]
    ws = await websockets.connect(f"{ws_url}?ticket={ticket}")
    await ws.close()
    with pytest.raises(websockets.InvalidStatus):  # used once
        await websockets.connect(f"{ws_url}?ticket={ticket}")
    book = app.state.auth.tickets
    old = book.issue(token, now=time.monotonic() - 31)  # made 31 s ago: expired
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{ws_url}?ticket={old}")
    assert httpx.post(f"{base}/api/ws-ticket").status_code == 401


async def test_foreign_origin_is_refused(served):
    base, app, _ = served
    token = login(base, "sam")
    host = base.split("//", 1)[1]
    ws_url = base.replace("http", "ws") + "/ws/supervisor"
    ticket = lambda: httpx.post(f"{base}/api/ws-ticket", headers=_h(token)).json()["ticket"]  # noqa: E731
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{ws_url}?ticket={ticket()}", origin="https://evil.example")
    ws = await websockets.connect(f"{ws_url}?ticket={ticket()}", origin=f"http://{host}")
    await ws.close()


@pytest.mark.parametrize("how", ["logout", "revoke", "disable"])
async def test_ending_a_session_closes_its_console_at_once(served, how):
    base, app, _ = served
    token = login(base, "mei")
    console = await Console.connect(base, "/ws/agent", token)
    await console.wait_event("hello")
    admin = login(base, "root")
    t0 = time.monotonic()
    if how == "logout":
        httpx.post(f"{base}/api/auth/logout", headers=_h(token))
    else:
        r = httpx.post(f"{base}/api/users/mei/{how}", headers=_h(admin))
        assert r.status_code == 200, r.text
    await console.wait(lambda c: c.closed, timeout=3)  # the console sent nothing
    assert time.monotonic() - t0 < 3
    assert any(e.get("code") == "session_expired" for e in console.named("error"))
    assert console.ws.close_code == 1008


async def test_an_expired_session_closes_its_console_within_the_check_interval(tmp_path):
    import datetime as dt

    from server.settings import PeopleSettings

    settings = make_settings(tmp_path, people=PeopleSettings(session_check_s=0.2))
    add_users(settings, [("mei", "agent", "en")])
    app = build_app(settings, components=fake_components())
    with serve(app, settings, ready_timeout=60) as base:
        token = login(base, "mei")
        console = await Console.connect(base, "/ws/agent", token)
        await console.wait_event("hello")
        auth = app.state.auth
        auth.now = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=auth.token_ttl_s + 1)
        await console.wait(lambda c: c.closed, timeout=3)
        assert any(e.get("code") == "session_expired" for e in console.named("error"))


async def test_sign_in_guessing_is_throttled_and_audited(served):
    base, app, _ = served
    async with httpx.AsyncClient(base_url=base) as client:
        codes = [(await client.post("/api/auth/login", json={"name": "sam", "password": f"guess {i}"})).status_code
                 for i in range(7)]
        assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
        r = await client.post("/api/auth/login", json={"name": "sam", "password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0  # even the right password, while throttled
        other = await client.post("/api/auth/login", json={"name": "mei", "password": PASSWORD})
        assert other.status_code == 200  # another account from the same address is not locked out
        admin = login(base, "root")
        audit = (await client.get("/api/audit", headers=_h(admin))).json()
    failures = [e for e in audit if e["action"] == "login_failed"]
    assert len(failures) == 5 and all(e["user_name"] == "sam" for e in failures)
    assert all("guess" not in str(e["detail"]) for e in failures)


def test_throttle_per_address_and_window():
    from server.people.throttle import LoginThrottle

    t = LoginThrottle(window_s=60, per_account=3, per_address=5)
    for i in range(5):
        t.failed(name=f"user{i}", address="10.0.0.1", now=float(i))
    assert t.retry_after(name="someone", address="10.0.0.1", now=5.0) == 55
    assert t.retry_after(name="someone", address="10.0.0.2", now=5.0) is None
    assert t.retry_after(name="someone", address="10.0.0.1", now=60.5) is None  # the first failure left the window


async def test_sign_in_hashes_off_the_event_loop(served, monkeypatch):
    """scrypt (50-80 ms a guess) runs in a worker thread: the event loop, which carries every call's audio, never
    waits on it. Checked by where it runs, not by timing."""
    import threading

    import server.people.auth as auth_module

    base, app, _ = served
    loop_thread = threading.get_ident()
    threads: list[int] = []
    real_verify = auth_module.verify_password

    def watched(password: str, stored: str) -> bool:
        threads.append(threading.get_ident())
        return real_verify(password, stored)

    monkeypatch.setattr(auth_module, "verify_password", watched)
    await app.state.auth.login("sam", PASSWORD)
    with pytest.raises(auth_module.AuthError):
        await app.state.auth.login("nobody", "wrong password")
    assert len(threads) == 2 and loop_thread not in threads


async def test_admin_manages_accounts(served):
    base, app, _ = served
    admin = login(base, "root")
    mei = login(base, "mei")
    assert httpx.post(f"{base}/api/users/mei/disable", headers=_h(admin)).status_code == 200
    assert httpx.get(f"{base}/api/me", headers=_h(mei)).status_code == 401
    assert httpx.post(f"{base}/api/auth/login", json={"name": "mei", "password": PASSWORD}).status_code == 401
    assert httpx.post(f"{base}/api/users/mei/enable", headers=_h(admin)).status_code == 200
    new = "a new passphrase 42"
    assert httpx.post(f"{base}/api/users/mei/password", json={"password": "short"}, headers=_h(admin)).status_code == 422
    assert httpx.post(f"{base}/api/users/mei/password", json={"password": new}, headers=_h(admin)).status_code == 200
    assert login(base, "mei", new)
    assert httpx.post(f"{base}/api/users/nobody/revoke", headers=_h(admin)).status_code == 404
    actions = [e["action"] for e in httpx.get(f"{base}/api/audit", headers=_h(admin)).json()]
    assert {"disable_user", "enable_user", "reset_password"} <= set(actions)


def test_users_command_disables_resets_and_revokes(tmp_path):
    settings = make_settings(tmp_path)
    add_users(settings, [("mei", "agent", "en")])

    def hotline(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "server.cli", "users", *args, "--db", settings.db_url],
                              input=stdin, capture_output=True, text=True, timeout=120)

    assert hotline("disable", "mei").returncode == 0
    assert "disabled" in hotline("list").stdout
    assert hotline("enable", "mei").returncode == 0
    r = hotline("reset-password", "mei", "--password-stdin", stdin="another good passphrase\n")
    assert r.returncode == 0, r.stderr
    r = hotline("revoke", "mei")
    assert r.returncode == 0 and "revoked" in r.stdout
    assert hotline("disable", "nobody").returncode == 2
