"""Access matrix: every role (anonymous, agent, another agent, supervisor, admin) against every route of the app
and every console websocket message type. Routes are enumerated from `app.routes`, so a route added later without a
permission fails here until it declares one (or is listed as public on purpose)."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from fakes import fake_components
from people_helpers import PASSWORD, add_users, build_app, make_settings
from server.people.auth import PERMISSIONS
from server.people.consoles import WS_MESSAGES

# Public on purpose: liveness/readiness for probes, the caller side (softphone page and the call websockets: callers
# do not sign in), the console pages (empty shells: all data comes from /api and the console websockets) and sign-in
# itself. /metrics needs a supervisor or the scraper's token; the API documentation exists only with public_docs.
PUBLIC = {"/healthz", "/readyz", "/", "/softphone/{name}", "/ws/call", "/ws/twilio", "/agent", "/supervisor",
          "/people/{name}", "/api/auth/login"}
ROLES = ["anonymous", "agent", "other_agent", "supervisor", "admin"]
USERS = {"agent": "mei", "other_agent": "alice", "supervisor": "sam", "admin": "root"}
ROLE_OF = {"agent": "agent", "other_agent": "agent", "supervisor": "supervisor", "admin": "admin"}
CALL = "c" * 32
ENTRY = "work_permit_cancel.when_who"  # an entry of the shipped knowledge base (the store is seeded from it)
# Bodies of the routes that need one, so that an allowed role gets a 2xx (the access decision is what is tested).
BODIES = {
    ("/api/users", "POST"): lambda: {"name": f"new{time.monotonic_ns()}", "role": "supervisor", "password": PASSWORD},
    ("/api/knowledge/entries/{entry_id}/variants", "POST"): lambda: {"language": "en", "text": f"q {time.monotonic_ns()}"},
    ("/api/knowledge/preview", "POST"): lambda: {"questions": [{"text": "How do I cancel my work permit?"}]},
    ("/api/knowledge/speech", "POST"): lambda: {"text": "Hello.", "language": "en"},
    ("/api/knowledge/entries/{entry_id}/rollback", "POST"): lambda: {"revision": 1},
}


def all_routes(routes, prefix: str = ""):
    """Every route of the app, with its full path. FastAPI 0.16x keeps included routers as branches
    (_IncludedRouter): walk into them."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            context = getattr(route, "include_context", None)
            yield from all_routes(original.routes, prefix + (getattr(context, "prefix", "") or ""))
        else:
            yield prefix + (getattr(route, "path", "") or ""), route


def permission_of(route: APIRoute) -> str | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        perm = getattr(dep.call, "permission", None)
        if perm:
            return perm
        stack.extend(dep.dependencies)
    return None


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    settings = make_settings(tmp)
    add_users(settings, [("mei", "agent", "zh"), ("alice", "agent", "en"), ("sam", "supervisor", ""), ("root", "admin", ""),
                         ("victim", "agent", "en")])
    app = build_app(settings, components=fake_components())
    with TestClient(app) as c:
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        _seed_call(c, app)
        tokens = {role: c.post("/api/auth/login", json={"name": name, "password": PASSWORD}).json()["token"]
                  for role, name in USERS.items()}
        c.tokens = tokens  # type: ignore[attr-defined]
        c.app_ = app  # type: ignore[attr-defined]
        yield c


def _seed_call(c: TestClient, app) -> None:
    """One finished call answered by mei, with a turn holding a phone number."""
    from server.people.models import QueueOutcome
    from server.store.models import Call, Turn

    async def seed() -> None:
        now = dt.datetime.now(dt.timezone.utc)
        async with app.state.store.sessions.begin() as s:
            s.add(Call(id=CALL, protocol="native", state="transferred_to_agent", reason="agent_ended", started_at=now,
                       ended_at=now, language="zh"))
        async with app.state.store.sessions.begin() as s:
            s.add(Turn(call_id=CALL, seq=1, speaker="caller", kind="utterance", text="我要转人工 13812345678",
                       language="zh", mixed=False, interrupted=False, created_at=now))
            s.add(QueueOutcome(call_id=CALL, queue_language="zh", topic="human_agent", outcome="answered", wait_s=3.0,
                               agent_name="mei", at=now))

    c.portal.call(seed)
    import wave

    folder = app.state.people.recordings_dir
    folder.mkdir(parents=True, exist_ok=True)
    with wave.open(str(folder / f"{CALL}.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\0\0" * 1600)


def _request(c: TestClient, route: APIRoute, token: str | None):
    # Account management acts on an account of its own ("victim"), so the roles' sessions stay valid.
    name = "victim" if route.path.startswith("/api/users/{name}") else "x"
    path = route.path.replace("{call_id}", CALL).replace("{name}", name).replace("{entry_id}", ENTRY)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    method = sorted(route.methods - {"HEAD"})[0]
    c.cookies.clear()  # sign-in sets a session cookie on this client: each role sends only its own token
    body = BODIES.get((route.path, method), lambda: None)()
    if route.path == "/api/knowledge/entries/{entry_id}" and method == "PUT":
        body = _entry_body(c, token)
    if path == "/api/users" and method == "POST":
        body = {"name": f"new{time.monotonic_ns()}", "role": "supervisor", "password": PASSWORD}
    if route.path == "/api/users/{name}/password":
        body = {"password": PASSWORD + " again"}
    return c.request(method, path, headers=headers, json=body)


def _entry_body(c: TestClient, token: str | None) -> dict | None:
    """The entry as the editor shows it (its draft or published document), to save back unchanged."""
    r = c.get("/api/knowledge/entries", params={"q": ENTRY}, headers={"Authorization": f"Bearer {token}"})
    items = [i for i in r.json().get("items", []) if i["id"] == ENTRY] if r.status_code == 200 else []
    return {"topic": items[0]["topic"], "document": items[0]["document"]} if items else {"topic": "x", "document": {}}


def test_every_route_is_public_or_declares_a_permission(client):
    undeclared = []
    seen = set()
    for path, route in all_routes(client.app_.routes):
        seen.add(path)
        if path in PUBLIC:
            continue
        if isinstance(route, APIRoute) and permission_of(route) is not None:
            continue
        if isinstance(route, (APIWebSocketRoute, WebSocketRoute)) and path in WS_MESSAGES:
            continue
        undeclared.append(path)
    assert undeclared == [], "routes with no permission: declare one with Depends(require(...)) or list them as public"
    assert {"/api/calls", "/ws/agent", "/ws/supervisor", "/agent"} <= seen  # the walk reached the included routers


def test_access_matrix_of_every_route(client):
    checked = 0
    for path, route in all_routes(client.app_.routes):
        if not isinstance(route, APIRoute) or path in PUBLIC:
            continue
        permission = permission_of(route)
        for role in ROLES:
            token = client.tokens.get(role)
            allowed = role != "anonymous" and ROLE_OF[role] in PERMISSIONS[permission]
            if route.path == "/api/auth/logout":
                continue  # checked below: it would end the session the other checks use
            r = _request(client, route, token)
            if role == "anonymous":
                assert r.status_code == 401, (route.path, role, r.status_code)
            elif not allowed:
                assert r.status_code == 403, (route.path, role, r.status_code)
            elif route.path == "/api/calls/{call_id}" and role == "other_agent":
                assert r.status_code == 404, "an agent sees only their own calls"
            else:
                assert 200 <= r.status_code < 300, (route.path, role, r.status_code, r.text[:200])
            checked += 1
    assert checked >= 12 * len(ROLES) - 12


def test_agents_cannot_edit_or_publish_and_publishing_is_audited(client):
    """The knowledge editor: supervisors and admins only; every publish and roll-back is in the audit log."""
    agent = {"Authorization": f"Bearer {client.tokens['agent']}"}
    sup = {"Authorization": f"Bearer {client.tokens['supervisor']}"}
    admin = {"Authorization": f"Bearer {client.tokens['admin']}"}
    client.cookies.clear()
    assert client.post(f"/api/knowledge/entries/{ENTRY}/variants", json={"language": "en", "text": "bankrupt?"},
                       headers=agent).status_code == 403
    assert client.post("/api/knowledge/publish", headers=agent).status_code == 403
    assert client.post(f"/api/knowledge/entries/{ENTRY}/rollback", json={"revision": 1}, headers=agent).status_code == 403
    assert client.post(f"/api/knowledge/entries/{ENTRY}/variants", json={"language": "en", "text": "What if my "
                       "employer goes bankrupt?"}, headers=sup).status_code == 200
    published = client.post("/api/knowledge/publish", headers=sup).json()
    assert ENTRY in published["changed"]
    rolled = client.post(f"/api/knowledge/entries/{ENTRY}/rollback", json={"revision": 1}, headers=sup).json()
    audit = client.get("/api/audit", params={"limit": 1000}, headers=admin).json()
    mine = [(e["action"], (e["detail"] or {}).get("version")) for e in audit if e["user_name"] == "sam"]
    assert ("knowledge_publish", published["version"]) in mine
    assert ("knowledge_rollback", rolled["version"]) in mine


def test_logout_needs_a_session_and_ends_it(client):
    client.cookies.clear()
    assert client.post("/api/auth/logout").status_code == 401
    token = client.post("/api/auth/login", json={"name": "alice", "password": PASSWORD}).json()["token"]
    h = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/auth/logout", headers=h).status_code == 200
    assert client.get("/api/me", headers=h).status_code == 401


def test_supervisor_reads_are_masked_and_audited(client):
    h = {"Authorization": f"Bearer {client.tokens['supervisor']}"}
    r = client.get(f"/api/calls/{CALL}", headers=h)
    assert "13812345678" not in r.text and "[PHONE]" in r.text
    admin = {"Authorization": f"Bearer {client.tokens['admin']}"}
    audit = client.get("/api/audit", params={"call_id": CALL}, headers=admin).json()
    assert any(e["action"] == "read_transcript" and e["user_name"] == "sam" for e in audit)
    mine = client.get(f"/api/calls/{CALL}", headers={"Authorization": f"Bearer {client.tokens['agent']}"})
    assert "13812345678" in mine.text  # the agent on the call


def _ws(client, path: str, token: str | None):
    """A console websocket as the pages open it: a one-time ticket for the session, then `?ticket=`."""
    client.cookies.clear()
    if not token:
        return client.websocket_connect(path)
    ticket = client.post("/api/ws-ticket", headers={"Authorization": f"Bearer {token}"}).json()["ticket"]
    client.cookies.clear()
    return client.websocket_connect(f"{path}?ticket={ticket}")


def test_websocket_connections_by_role(client):
    for path, (permission, _) in WS_MESSAGES.items():
        for role in ROLES:
            token = client.tokens.get(role)
            allowed = role != "anonymous" and ROLE_OF[role] in PERMISSIONS[permission]
            if not allowed:
                with pytest.raises(WebSocketDisconnect) as info:
                    with _ws(client, path, token) as ws:
                        ws.receive_json()
                assert info.value.code == 1008, (path, role)
            else:
                with _ws(client, path, token) as ws:
                    assert _until(ws, "hello")["user"]["name"] == USERS[role]


def _until(ws, event: str, limit: int = 50) -> dict:
    for _ in range(limit):
        msg = ws.receive_json()
        if msg.get("event") == event:
            return msg
    raise AssertionError(f"no {event}")


ALL_TYPES = sorted(set().union(*(types for _, types in WS_MESSAGES.values())) | {"drop_tables", "admin"})


def test_every_websocket_message_type_against_every_console(client):
    for path, (permission, allowed) in WS_MESSAGES.items():
        for role in ROLES:
            if role == "anonymous" or ROLE_OF[role] not in PERMISSIONS[permission]:
                continue  # refused at connect (previous test)
            with _ws(client, path, client.tokens[role]) as ws:
                _until(ws, "hello")
                for kind in ALL_TYPES:
                    ws.send_json({"type": kind, "call_id": CALL, "state": "bogus", "text": "hi", "task_id": "x",
                                  "sample_rate": 1, "disposition": "nope"})
                    if kind == "ping":
                        _until(ws, "pong")
                        continue
                    if kind in ("unwatch", "unlisten") and kind in allowed:
                        _until(ws, kind + "ed")  # harmless: stops nothing that was not started
                        continue
                    err = _until(ws, "error")
                    if kind not in allowed:
                        assert err["code"] == "unknown_message", (path, role, kind)
                    else:
                        # Allowed types with a call that is not theirs / bad values: refused, never done.
                        assert err["code"] in ("refused", "no_such_call"), (path, role, kind, err)


def test_a_signed_out_session_stops_on_its_next_message(client):
    token = client.post("/api/auth/login", json={"name": "alice", "password": PASSWORD}).json()["token"]
    with _ws(client, "/ws/agent", token) as ws:
        _until(ws, "hello")
        client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
        ws.send_json({"type": "availability", "state": "available"})
        assert _until(ws, "error")["code"] == "session_expired"


def test_bad_input_on_the_consoles_gets_clear_errors(client):
    with _ws(client, "/ws/agent", client.tokens["agent"]) as ws:
        _until(ws, "hello")
        ws.send_text("{not json")
        assert _until(ws, "error")["code"] == "bad_json"
        ws.send_text("[1, 2]")
        assert _until(ws, "error")["code"] == "bad_message"
        ws.send_text(json.dumps({"type": "reply", "text": "x" * 20000}))
        assert _until(ws, "error")["code"] == "too_large"
        ws.send_bytes(b"\x00" * 641)
        assert _until(ws, "error")["code"] == "bad_audio"
        ws.send_bytes(b"\x00" * 640)  # microphone audio while not on a call: dropped, no error
        ws.send_json({"type": "ping"})
        assert _until(ws, "pong")
    with _ws(client, "/ws/supervisor", client.tokens["supervisor"]) as ws:
        _until(ws, "hello")
        ws.send_bytes(b"\x00" * 640)
        assert _until(ws, "error")["code"] == "unexpected_audio"
        ws.send_json({"type": "watch", "call_id": "nope"})
        assert _until(ws, "error")["code"] == "no_such_call"
