"""The optional chat backend, against a small local OpenAI-compatible stand-in server (real HTTP, no mock)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from routing.llm import ChatRewriter
from routing.router import Router
from routing.settings import LlmSettings
from routing_helpers import fixture_settings


class StandIn:
    """An OpenAI-compatible /v1/chat/completions endpoint whose behaviour each test sets."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.reply = "Bring your passport and degree. Please confirm with the official channel."
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if outer.mode == "slow":
                    time.sleep(1.5)
                if outer.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                payload = {"choices": [{"message": {"role": "assistant", "content": outer.reply}}]}
                data = b"{not json" if outer.mode == "garbage" else json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def stand_in():
    s = StandIn()
    yield s
    s.close()


def _llm(stand_in: StandIn, **overrides) -> LlmSettings:
    values = dict(enabled=True, base_url=stand_in.base_url, model="stand-in", api_key="sk-test", timeout_s=0.5)
    values.update(overrides)
    return LlmSettings(**values)


def test_rewrite_is_grounded_in_the_facts_given(stand_in):
    rewriter = ChatRewriter(settings=_llm(stand_in))
    reply = rewriter.rewrite(question="what papers?", facts=["Fact one.", "Fact two."], language="en")
    assert reply == stand_in.reply
    request = stand_in.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    system, user = request["body"]["messages"]
    assert system["role"] == "system" and "ONLY" in system["content"]
    assert "Fact one." in system["content"] and "Fact two." in system["content"]
    assert user == {"role": "user", "content": "what papers?"}
    assert request["body"]["model"] == "stand-in"
    rewriter.close()


@pytest.mark.parametrize("mode", ["error", "slow", "garbage"])
def test_failures_return_none(stand_in, mode):
    stand_in.mode = mode
    rewriter = ChatRewriter(settings=_llm(stand_in))
    t0 = time.monotonic()
    assert rewriter.rewrite(question="q", facts=["f"], language="en") is None
    assert time.monotonic() - t0 < 1.4, "the time-out bounds the wait"
    rewriter.close()


def test_wrong_language_or_empty_reply_is_rejected(stand_in):
    rewriter = ChatRewriter(settings=_llm(stand_in))
    stand_in.reply = "Bring your passport."
    assert rewriter.rewrite(question="要什么材料", facts=["护照。"], language="zh") is None
    stand_in.reply = "   "
    assert rewriter.rewrite(question="q", facts=["f"], language="en") is None
    stand_in.reply = "请带护照。详见 https://example.org/x"
    assert rewriter.rewrite(question="要什么材料", facts=["护照。"], language="zh") == "请带护照。详见"
    rewriter.close()


def test_unreachable_endpoint_returns_none():
    rewriter = ChatRewriter(settings=LlmSettings(enabled=True, base_url="http://127.0.0.1:9/v1", timeout_s=0.5))
    assert rewriter.rewrite(question="q", facts=["f"], language="en") is None
    rewriter.close()


def test_router_uses_the_reply_and_falls_back_to_retrieval(stand_in, tmp_path):
    router = Router.load(fixture_settings(tmp_path, llm=_llm(stand_in)))
    q = "What papers do I need for my work permit?"
    d = router.decide(q, language="en")
    assert (d.route, d.topic, d.answer) == ("answer", "work_permit_apply", stand_in.reply)
    assert d.reason.endswith("+llm")
    facts = stand_in.requests[-1]["body"]["messages"][0]["content"]
    assert router.kb.by_id(d.entry_id).answer["en"] in facts
    stand_in.mode = "error"
    d = router.decide(q, language="en")
    assert d.answer == router.kb.by_id(d.entry_id).answer["en"] and d.reason.endswith("+llm_fallback")
    # Only answers are rewritten: a request for a person never waits on the chat backend.
    n = len(stand_in.requests)
    assert router.decide("转人工", language="zh").route == "agent" and len(stand_in.requests) == n
    router.close()


def test_off_by_default(tmp_path):
    router = Router.load(fixture_settings(tmp_path))
    assert router.rewriter is None and not router.settings.llm.enabled
    router.close()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        LlmSettings(enabled=True, base_url="ftp://x")
    with pytest.raises(ValueError):
        LlmSettings(timeout_s=0)
