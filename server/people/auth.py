"""Accounts, passwords, token sessions and the role check of every route and websocket message.

- Passwords: scrypt (hashlib, no extra dependency) with a random 16-byte salt per user, stored as
  `scrypt$n$r$p$salt$hash`; compared in constant time. Parameters n=2**14, r=8 (16 MiB, ~50 ms on this machine):
  slow for a guesser, fast enough for a sign-in.
- Sessions: a random token (32 bytes, url-safe) is handed to the client once; only its SHA-256 is stored, with an
  expiry, so a copy of the database gives no usable token. Pages send it as `Authorization: Bearer …` or the
  `hotline_session` cookie (HttpOnly, SameSite=Strict). Websockets never carry it in the URL (URLs end up in logs
  and browser history): the console first asks `POST /api/ws-ticket` for a one-time ticket that expires in
  `ws_ticket_ttl_s` (30 s) and opens `?ticket=…`; the ticket stands for the session it was made from.
- Scrypt runs in a worker thread (`asyncio.to_thread`): 50-80 ms of hashing on the event loop would delay every
  call's audio. Sign-in guessing is throttled per account and per address (server/people/throttle.py).
- Signing out, disabling an account or revoking its tokens tells every open console of that session or account at
  once (`watch`); the consoles also re-check their session every `session_check_s`, which catches expiry.
- Roles: agent, supervisor, admin. `PERMISSIONS` says which role may do what; routes declare the permission they
  need with `Depends(require("…"))`, and the access-matrix test checks every route of the app against it.
- No default passwords in production: well-known passwords are refused, and accounts made with `--dev` (which may
  have any password) cannot sign in unless the service runs with `people.dev_mode`.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterable

from fastapi import Depends, HTTPException, Request, WebSocket
from sqlalchemy import select, update

from server.people.models import ROLES, AuditEntry, AuthToken, User
from server.store.models import as_utc, utcnow

COOKIE = "hotline_session"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 10
# Passwords that appear in every default-credentials list: never accepted outside dev mode.
WELL_KNOWN = frozenset({
    "password", "password1", "password123", "admin", "admin123", "administrator", "changeme", "changeme123",
    "123456", "12345678", "123456789", "1234567890", "qwerty", "qwertyuiop", "letmein", "welcome", "demo",
    "demo1234", "hotline", "hotline123", "secret", "supervisor", "agent", "test", "testtest", "iloveyou",
})

# permission -> roles that hold it. Admin is a superset of supervisor; an agent only takes calls.
PERMISSIONS: dict[str, frozenset[str]] = {
    "self": frozenset(ROLES),  # who am I, sign out
    "queue.view": frozenset(ROLES),  # calls waiting, languages, wait times (no transcripts)
    "agent.console": frozenset({"agent"}),  # take calls: the agent websocket and the agent's own history
    "calls.review": frozenset({"supervisor", "admin"}),  # history, transcripts, recordings, exports, live, dashboard
    # The knowledge editor: supervisors (who review the calls) edit, preview and publish answers; no separate role,
    # so no account needs a second login. Agents never change what the bot says.
    "knowledge.edit": frozenset({"supervisor", "admin"}),
    "knowledge.publish": frozenset({"supervisor", "admin"}),
    "users.manage": frozenset({"admin"}),
    "audit.read": frozenset({"admin"}),
}


class AuthError(ValueError):
    pass


class PasswordRejected(AuthError):
    pass


# ------------------------------------------------------------------ passwords


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    if not isinstance(password, str) or not password:
        raise PasswordRejected("the password is empty")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32,
                            maxmem=64 * 1024 * 1024)
    b64 = lambda b: base64.urlsafe_b64encode(b).decode("ascii").rstrip("=")  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        unb64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))  # noqa: E731
        salt, expected = unb64(salt_b64), unb64(hash_b64)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected),
                                maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def check_password_policy(password: str, *, name: str = "", dev: bool = False) -> None:
    """Refuse empty, short, well-known and name-derived passwords (all allowed with dev=True except empty)."""
    if not password:
        raise PasswordRejected("the password is empty")
    if dev:
        return
    low = password.lower()
    if len(password) < MIN_PASSWORD:
        raise PasswordRejected(f"the password must have at least {MIN_PASSWORD} characters")
    if password.isdigit() or len(set(password)) < 4:
        raise PasswordRejected("the password is too simple (digits only, or a few characters repeated)")
    if low in WELL_KNOWN or low.rstrip("0123456789!") in WELL_KNOWN:
        raise PasswordRejected("the password is a well-known default; choose another")
    if name and name.lower() in low:
        raise PasswordRejected("the password must not contain the user name")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_languages(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    langs = tuple(dict.fromkeys(x.strip().lower() for x in items if x and x.strip()))
    bad = [x for x in langs if x not in ("en", "zh")]
    if bad:
        raise AuthError(f"unknown language(s) {bad}: use en and/or zh")
    return langs


# ------------------------------------------------------------------ principals


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request (after the token was checked)."""

    user_id: int
    name: str
    role: str
    languages: tuple[str, ...]

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


@dataclass
class TicketBook:
    """One-time websocket tickets: ticket -> (the session token it stands for, expiry on a monotonic clock).

    In memory, per process: a ticket is used seconds after it is made, by the same browser, on the same server.
    At most `max_tickets` are outstanding (expired ones are swept first), so asking for tickets cannot fill memory.
    """

    ttl_s: float = 30.0
    max_tickets: int = 10_000
    _tickets: dict[str, tuple[str, float]] = field(default_factory=dict)

    def issue(self, token: str, now: float) -> str:
        if len(self._tickets) >= self.max_tickets:
            self._tickets = {k: v for k, v in self._tickets.items() if v[1] > now}
            while len(self._tickets) >= self.max_tickets:
                self._tickets.pop(next(iter(self._tickets)))
        ticket = secrets.token_urlsafe(24)
        self._tickets[token_hash(ticket)] = (token, now + self.ttl_s)
        return ticket

    def redeem(self, ticket: str | None, now: float) -> str | None:
        """The session token of a valid ticket, once; None for an unknown, used or expired ticket."""
        if not ticket or len(ticket) > 128:
            return None
        entry = self._tickets.pop(token_hash(ticket), None)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]


class AuthService:
    """Accounts, tokens and the audit log on the store's engine. `now` is injectable for expiry tests."""

    def __init__(self, *, store: Any, token_ttl_s: float = 12 * 3600, dev_mode: bool = False,
                 now: Callable[[], dt.datetime] = utcnow, ticket_ttl_s: float = 30.0) -> None:
        self.store = store
        self.token_ttl_s = token_ttl_s
        self.dev_mode = dev_mode
        self.now = now
        self.tickets = TicketBook(ttl_s=ticket_ttl_s)
        # Open consoles to tell when their session ends: token hash or ("user", id) -> callbacks.
        self._watchers: dict[Any, set[Callable[[str], None]]] = {}

    # --- open consoles

    def watch(self, token: str, user_id: int, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(reason)` when this session is signed out or the account is disabled or revoked.
        Returns the function that stops watching."""
        keys = (token_hash(token), ("user", user_id))
        for key in keys:
            self._watchers.setdefault(key, set()).add(callback)

        def unwatch() -> None:
            for key in keys:
                group = self._watchers.get(key)
                if group is not None:
                    group.discard(callback)
                    if not group:
                        del self._watchers[key]

        return unwatch

    def _notify(self, key: Any, reason: str) -> None:
        for callback in list(self._watchers.get(key, ())):
            try:
                callback(reason)
            except Exception:  # one console's problem must not stop the others from being told
                pass

    # --- accounts

    async def add_user(self, *, name: str, role: str, password: str, languages: Iterable[str] | str | None = None,
                       dev: bool = False) -> User:
        name = (name or "").strip()
        if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
            raise AuthError("user names are 1-64 letters, digits or . _ - @")
        if role not in ROLES:
            raise AuthError(f"role must be one of {list(ROLES)}")
        langs = parse_languages(languages)
        if role == "agent" and not langs:
            raise AuthError("an agent needs at least one language (--languages en,zh)")
        check_password_policy(password, name=name, dev=dev)
        async with self.store.sessions.begin() as s:
            if (await s.execute(select(User).where(User.name == name))).scalar_one_or_none() is not None:
                raise AuthError(f"user {name!r} exists")
            hashed = await asyncio.to_thread(hash_password, password)
            user = User(name=name, role=role, languages=",".join(langs), password_hash=hashed,
                        dev_only=dev, disabled=False, created_at=self.now())
            s.add(user)
        return user

    async def users(self) -> list[User]:
        async with self.store.sessions() as s:
            return list((await s.execute(select(User).order_by(User.name))).scalars())

    async def dev_accounts(self) -> int:
        async with self.store.sessions() as s:
            rows = await s.execute(select(User.id).where(User.dev_only.is_(True), User.disabled.is_(False)))
            return len(rows.all())

    # --- sessions

    async def login(self, name: str, password: str) -> tuple[str, Principal]:
        async with self.store.sessions() as s:
            user = (await s.execute(select(User).where(User.name == name))).scalar_one_or_none()
        # Verify against a dummy hash when the user does not exist: the answer takes as long either way. In a
        # thread: scrypt holds the CPU for 50-80 ms, which on the event loop would stall every call's audio.
        ok = await asyncio.to_thread(verify_password, password, user.password_hash if user else _DUMMY_HASH)
        if user is None or not ok or user.disabled:
            raise AuthError("wrong user name or password")
        if user.dev_only and not self.dev_mode:
            raise AuthError("this account was made for development (--dev) and cannot sign in here")
        token = secrets.token_urlsafe(32)
        now = self.now()
        async with self.store.sessions.begin() as s:
            s.add(AuthToken(token_hash=token_hash(token), user_id=user.id, created_at=now,
                            expires_at=now + dt.timedelta(seconds=self.token_ttl_s), revoked=False))
        return token, _principal(user)

    async def authenticate(self, token: str | None) -> Principal | None:
        if not token or len(token) > 256:
            return None
        async with self.store.sessions() as s:
            row = (await s.execute(
                select(AuthToken, User).join(User, User.id == AuthToken.user_id).where(AuthToken.token_hash == token_hash(token))
            )).first()
        if row is None:
            return None
        tok, user = row
        if tok.revoked or user.disabled or as_utc(tok.expires_at) <= self.now():
            return None
        if user.dev_only and not self.dev_mode:
            return None
        return _principal(user)

    async def logout(self, token: str) -> None:
        async with self.store.sessions.begin() as s:
            await s.execute(update(AuthToken).where(AuthToken.token_hash == token_hash(token)).values(revoked=True))
        self._notify(token_hash(token), "signed_out")

    # --- account management (admin route and `hotline users ...`)

    async def _user(self, s: Any, name: str) -> User:
        user = (await s.execute(select(User).where(User.name == name))).scalar_one_or_none()
        if user is None:
            raise AuthError(f"no user {name!r}")
        return user

    async def revoke(self, name: str) -> int:
        """Revoke every session of `name`; open consoles are closed. Returns how many sessions were live."""
        async with self.store.sessions.begin() as s:
            user = await self._user(s, name)
            result = await s.execute(update(AuthToken).where(AuthToken.user_id == user.id, AuthToken.revoked.is_(False))
                                     .values(revoked=True))
            user_id = user.id
        self._notify(("user", user_id), "revoked")
        return result.rowcount or 0

    async def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (sign-in refused, every session revoked, consoles closed) or enable an account."""
        async with self.store.sessions.begin() as s:
            user = await self._user(s, name)
            user.disabled = disabled
        if disabled:
            await self.revoke(name)

    async def reset_password(self, name: str, password: str) -> None:
        """Set a new password (policy checked); every session of the account is revoked."""
        async with self.store.sessions.begin() as s:
            user = await self._user(s, name)
            check_password_policy(password, name=name, dev=user.dev_only)
            user.password_hash = await asyncio.to_thread(hash_password, password)
        await self.revoke(name)

    # --- audit (append only: there is no update or delete here, and the database refuses both)

    async def audit(self, who: Principal, action: str, *, call_id: str | None = None,
                    detail: dict[str, Any] | None = None) -> None:
        async with self.store.sessions.begin() as s:
            s.add(AuditEntry(at=self.now(), user_name=who.name, role=who.role, action=action[:48], call_id=call_id,
                             detail=detail))

    async def audit_failure(self, name: str, action: str, *, detail: dict[str, Any] | None = None) -> None:
        """An attempt by someone not signed in (a failed sign-in): the name they tried, role "-"."""
        async with self.store.sessions.begin() as s:
            s.add(AuditEntry(at=self.now(), user_name=(name or "")[:64], role="-", action=action[:48], detail=detail))

    async def audit_entries(self, *, limit: int = 200, call_id: str | None = None) -> list[AuditEntry]:
        async with self.store.sessions() as s:
            q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            if call_id:
                q = q.where(AuditEntry.call_id == call_id)
            return list((await s.execute(q)).scalars())


_DUMMY_HASH = hash_password("not-a-real-password-only-for-timing", salt=b"\0" * 16)


def _principal(user: User) -> Principal:
    return Principal(user_id=user.id, name=user.name, role=user.role,
                     languages=tuple(x for x in (user.languages or "").split(",") if x))


# ------------------------------------------------------------------ FastAPI dependencies


def request_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE)


def auth_service(request: Request) -> AuthService:
    service = getattr(request.app.state, "auth", None)
    if service is None:
        raise HTTPException(status_code=503, detail="the service is starting")
    return service


async def current_principal(request: Request) -> Principal:
    service = auth_service(request)
    principal = await service.authenticate(request_token(request))
    if principal is None:
        raise HTTPException(status_code=401, detail="sign in first", headers={"WWW-Authenticate": "Bearer"})
    return principal


def require(permission: str) -> Any:
    """A dependency: the signed-in principal, if their role holds `permission` (401 signed out, 403 not allowed)."""
    if permission not in PERMISSIONS:
        raise KeyError(permission)

    async def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.can(permission):
            raise HTTPException(status_code=403, detail=f"your role ({principal.role}) may not do this")
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # read by the access-matrix test
    return Depends(dependency)


def websocket_token(websocket: WebSocket) -> str | None:
    """The session token behind a websocket: a one-time `?ticket=` (browsers cannot set headers on websockets, and
    a URL is no place for a long-lived token), else the cookie or an Authorization header. Resolved once per
    connection (the ticket is used up) and kept in the connection's scope for the re-checks that follow."""
    scope = websocket.scope
    if "hotline_token" not in scope:
        service = getattr(websocket.app.state, "auth", None)
        token = None
        ticket = websocket.query_params.get("ticket")
        if ticket and service is not None:
            token = service.tickets.redeem(ticket, time.monotonic())
        if token is None and not ticket:
            token = websocket.cookies.get(COOKIE)
            header = websocket.headers.get("authorization", "")
            if not token and header.lower().startswith("bearer "):
                token = header[7:].strip()
        scope["hotline_token"] = token
    return scope["hotline_token"]


async def websocket_principal(websocket: WebSocket) -> Principal | None:
    """The principal of a websocket upgrade (see `websocket_token`), checked again at every call."""
    service = getattr(websocket.app.state, "auth", None)
    if service is None:
        return None
    return await service.authenticate(websocket_token(websocket))
