"""HTTP hardening (server/security.py and friends): security headers on every response, no public /docs or
/metrics, 422s that never echo a password, the chat backend hears masked text, typed replies limited and split."""
from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from fakes import fake_components
from people_helpers import PASSWORD, add_users, build_app, make_settings


def client_for(tmp_path, **overrides):
    settings = make_settings(tmp_path, **overrides)
    add_users(settings, [("mei", "agent", "en"), ("sam", "supervisor", "")])
    app = build_app(settings, components=fake_components())
    return TestClient(app)


def _token(c: TestClient, name: str) -> str:
    c.cookies.clear()
    token = c.post("/api/auth/login", json={"name": name, "password": PASSWORD}).json()["token"]
    c.cookies.clear()
    return token


def test_every_response_has_the_security_headers(tmp_path):
    with client_for(tmp_path) as c:
        for method, path in [("get", "/healthz"), ("get", "/api/me"), ("get", "/agent"), ("get", "/no/such/page"),
                             ("post", "/api/auth/login")]:
            r = getattr(c, method)(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
            assert r.headers["referrer-policy"] == "no-referrer", path
        assert c.get("/api/me").headers["cache-control"] == "no-store"
        assert "strict-transport-security" in c.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers


def test_docs_and_metrics_are_not_public(tmp_path):
    with client_for(tmp_path, metrics_token="scrape-me-0123") as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 404, path
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123"}).status_code == 200
        assert c.get("/metrics", headers={"Authorization": f"Bearer {_token(c, 'mei')}"}).status_code == 403
        r = c.get("/metrics", headers={"Authorization": f"Bearer {_token(c, 'sam')}"})
        assert r.status_code == 200 and "hotline_calls" in r.text


def test_docs_when_asked_for(tmp_path):
    with client_for(tmp_path, public_docs=True) as c:
        assert c.get("/openapi.json").status_code == 200 and c.get("/docs").status_code == 200


def test_a_422_never_echoes_the_password(tmp_path):
    secret = "hunter2-very-secret"
    with client_for(tmp_path) as c:
        for body in ({"name": "", "password": secret}, {"password": secret}, {"name": ["x"], "password": secret}):
            r = c.post("/api/auth/login", json=body)
            assert r.status_code == 422 and secret not in r.text, r.text
            assert all({"loc", "msg", "type"} <= set(e) for e in r.json()["detail"])
        admin_free = c.post("/api/users", json={"name": "x", "role": "boss", "password": secret},
                            headers={"Authorization": f"Bearer {_token(c, 'sam')}"})
        assert secret not in admin_free.text


def test_the_chat_backend_receives_masked_caller_text():
    from routing.llm import ChatRewriter
    from routing.settings import LlmSettings
    from server.call.wiring import mask_chat_backend
    from test_routing_llm import StandIn

    stand = StandIn()
    try:
        rewriter = ChatRewriter(settings=LlmSettings(enabled=True, base_url=stand.base_url, timeout_s=5))
        router = type("R", (), {"rewriter": rewriter})()
        mask_chat_backend(router)
        rewriter.rewrite(question="my number is 138 1234 5678 and mail li.wei@qq.com", facts=["a fact"], language="en")
        sent = json.dumps(stand.requests, ensure_ascii=False)
        assert stand.requests and "5678" not in sent and "li.wei" not in sent and "[PHONE]" in sent
        rewriter.close()
    finally:
        stand.close()


def test_typed_replies_are_split_into_sentences():
    from server.people.consoles import split_sentences

    assert split_sentences("Hello. How can I help?  请稍等。我看一下！") == ["Hello.", "How can I help?", "请稍等。", "我看一下！"]
    long = "x" * 700
    assert [len(p) for p in split_sentences(long)] == [240, 240, 220]


def test_an_over_long_typed_reply_is_refused(tmp_path):
    with client_for(tmp_path) as c:
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        token = _token(c, "mei")
        ticket = c.post("/api/ws-ticket", headers={"Authorization": f"Bearer {token}"}).json()["ticket"]
        c.cookies.clear()
        with c.websocket_connect(f"/ws/agent?ticket={ticket}") as ws:
            ws.send_json({"type": "reply", "text": "word " * 400})
            for _ in range(50):
                msg = ws.receive_json()
                if msg.get("event") == "error":
                    break
            assert msg["code"] == "refused" and "at most" in msg["message"]
