"""Accounts and sessions (server/people/auth.py): password hashing, policy, token expiry and revocation, dev accounts,
the audit log's append-only guarantee, and `hotline users add/list`."""
from __future__ import annotations

import datetime as dt
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from server.people.auth import AuthError, AuthService, PasswordRejected, check_password_policy, hash_password, token_hash, verify_password
from server.store import Store

GOOD = "correct horse battery staple"


def test_hash_is_salted_and_verifies():
    a, b = hash_password(GOOD), hash_password(GOOD)
    assert a != b and a.startswith("scrypt$")  # a per-user salt: equal passwords, different hashes
    assert GOOD not in a
    assert verify_password(GOOD, a) and verify_password(GOOD, b)
    assert not verify_password(GOOD + "!", a)
    assert not verify_password(GOOD, "garbage") and not verify_password(GOOD, "scrypt$1$2$3$x$y")


@pytest.mark.parametrize("password", ["", "short", "password123", "Changeme123", "admin", "123456789012"])
def test_weak_and_default_passwords_are_refused(password):
    with pytest.raises(PasswordRejected):
        check_password_policy(password, name="mei")


def test_name_in_password_is_refused_but_dev_accepts_anything_but_empty():
    with pytest.raises(PasswordRejected):
        check_password_policy("mei-is-the-best-agent", name="mei")
    check_password_policy("demo", dev=True)
    with pytest.raises(PasswordRejected):
        check_password_policy("", dev=True)


class Clock:
    def __init__(self) -> None:
        self.t = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.t


@pytest.fixture
async def store(tmp_path):
    s = Store(url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")
    await s.migrate()
    yield s
    await s.close()


async def test_tokens_expire_and_are_stored_hashed(store):
    clock = Clock()
    auth = AuthService(store=store, token_ttl_s=3600, now=clock)
    await auth.add_user(name="mei", role="agent", password=GOOD, languages="zh,en")
    token, who = await auth.login("mei", GOOD)
    assert (who.name, who.role, who.languages) == ("mei", "agent", ("zh", "en"))
    assert (await auth.authenticate(token)) == who
    async with store.engine.connect() as c:
        stored = [r[0] for r in await c.execute(text("SELECT token_hash FROM auth_tokens"))]
    assert stored == [token_hash(token)] and token not in stored
    clock.t += dt.timedelta(seconds=3599)
    assert await auth.authenticate(token) is not None
    clock.t += dt.timedelta(seconds=1)
    assert await auth.authenticate(token) is None  # expired exactly at its ttl
    assert await auth.authenticate(token + "x") is None and await auth.authenticate("") is None


async def test_logout_revokes_and_wrong_passwords_fail(store):
    auth = AuthService(store=store)
    await auth.add_user(name="sam", role="supervisor", password=GOOD)
    with pytest.raises(AuthError):
        await auth.login("sam", "wrong password here")
    with pytest.raises(AuthError):
        await auth.login("nobody", GOOD)
    token, _ = await auth.login("sam", GOOD)
    await auth.logout(token)
    assert await auth.authenticate(token) is None


async def test_account_rules(store):
    auth = AuthService(store=store)
    with pytest.raises(AuthError):
        await auth.add_user(name="a1", role="agent", password=GOOD)  # an agent needs a language
    with pytest.raises(AuthError):
        await auth.add_user(name="a2", role="boss", password=GOOD)
    with pytest.raises(AuthError):
        await auth.add_user(name="a3", role="agent", password=GOOD, languages="ja")
    with pytest.raises(AuthError):
        await auth.add_user(name="bad name!", role="admin", password=GOOD)
    await auth.add_user(name="root", role="admin", password=GOOD)
    with pytest.raises(AuthError):
        await auth.add_user(name="root", role="admin", password=GOOD)


async def test_dev_accounts_sign_in_only_in_dev_mode(store):
    await AuthService(store=store).add_user(name="demo", role="agent", password="demo", languages="en", dev=True)
    with pytest.raises(AuthError):
        await AuthService(store=store, dev_mode=False).login("demo", "demo")
    dev = AuthService(store=store, dev_mode=True)
    token, _ = await dev.login("demo", "demo")
    assert await dev.authenticate(token) is not None
    assert await AuthService(store=store, dev_mode=False).authenticate(token) is None
    assert await AuthService(store=store).dev_accounts() == 1


async def test_audit_log_is_append_only(store):
    auth = AuthService(store=store)
    await auth.add_user(name="sam", role="supervisor", password=GOOD)
    _, who = await auth.login("sam", GOOD)
    await auth.audit(who, "read_transcript", call_id="c1")
    await auth.audit(who, "export", detail={"calls": 3})
    assert [e.action for e in await auth.audit_entries()] == ["export", "read_transcript"]
    for statement in ("UPDATE audit_log SET action = 'nothing'", "DELETE FROM audit_log"):
        with pytest.raises((IntegrityError, DBAPIError)) as info:
            async with store.engine.begin() as c:
                await c.execute(text(statement))
        assert "append-only" in str(info.value)
    assert len(await auth.audit_entries()) == 2
    assert not any(hasattr(AuthService, n) for n in ("update_audit", "delete_audit", "clear_audit"))


def _hotline(argv: list[str], *, stdin: str = "", monkeypatch, capsys) -> tuple[int, str, str]:
    """Run `hotline ARGV` in process, through server/cli.py's parser."""
    import io

    from server import cli

    parser = cli.build_parser()
    args = parser.parse_args(argv)
    args.load_settings = lambda: cli._load_settings(None)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = int(args.func(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_users_cli_add_and_list(tmp_path, monkeypatch, capsys):
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    code, out, err = _hotline(["users", "add", "mei", "--role", "agent", "--languages", "zh,en", "--password-stdin",
                               "--db", db], stdin=GOOD + "\n", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    code, out, err = _hotline(["users", "add", "bob", "--role", "admin", "--password-stdin", "--db", db],
                              stdin="changeme\n", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "password" in err
    code, out, err = _hotline(["users", "list", "--db", db], monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    assert any(line.split()[:3] == ["mei", "agent", "zh,en"] for line in lines)
    assert not any(line.startswith("bob") for line in lines)
    assert GOOD not in out
