"""Optional second backend: an OpenAI-compatible chat endpoint rewrites the retrieved entries into a reply.

Grounded only in the entries given (the system message says so, and nothing else is sent); any error, time-out,
empty or wrong-language reply returns None, and the router speaks the retrieval answer instead. Off by default.
"""
from __future__ import annotations

import logging
import re
from typing import Callable, Sequence

import httpx

from routing.settings import LlmSettings

log = logging.getLogger(__name__)

_SYSTEM = {
    "en": (
        "You are Waibot, the voice assistant of the Foreign Talent in Shanghai hotline. Answer the caller's question "
        "using ONLY the facts below; if they do not answer it, say so and offer to transfer the caller to a person. "
        "Reply in English, in two to four short spoken sentences: no lists, no URLs, no markdown. Keep any advice to "
        "confirm with the official channel.\n\nFacts:\n{facts}"
    ),
    "zh": (
        "你是“外国人才在上海”热线的语音助手 Waibot。只根据下面的资料回答来电者的问题；资料里没有答案时，直接说明并提出"
        "可以转人工。用中文回答，两到四个简短的口语句子，不要列表、网址或格式符号。资料里提醒向官方渠道确认的，保留这一提醒。"
        "\n\n资料：\n{facts}"
    ),
}
_HAN_RE = re.compile(r"[\u4e00-\u9fff]")
_URL_RE = re.compile(r"https?://\S+|www\.\S+")
MAX_REPLY_CHARS = 600


class ChatRewriter:
    """One client per process; `rewrite` blocks for at most `timeout_s` and never raises."""

    def __init__(self, *, settings: LlmSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        # Applied to the caller's words before they leave: the service sets its masking of personal data here
        # (server/call/wiring.py); routing itself does not know what is personal.
        self.redact: Callable[[str], str] = lambda text: text
        headers = {}
        key = settings.api_key.get_secret_value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            base_url=settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def rewrite(self, *, question: str, facts: Sequence[str], language: str) -> str | None:
        """A reply grounded in `facts`, in `language` (en | zh); None on any failure (the caller falls back)."""
        if language not in _SYSTEM or not facts:
            return None
        body = {
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": _SYSTEM[language].format(facts="\n".join(f"- {f}" for f in facts))},
                {"role": "user", "content": self.redact(question[:1000])},
            ],
            "max_tokens": self.settings.max_tokens,
            "temperature": self.settings.temperature,
        }
        try:
            response = self._client.post("chat/completions", json=body)
            response.raise_for_status()
            reply = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            # The exception type only: the request and reply may hold the caller's words.
            log.warning("chat backend failed; using the retrieval answer", extra={"error": type(exc).__name__})
            return None
        return _acceptable(reply, language)


def _acceptable(reply: object, language: str) -> str | None:
    if not isinstance(reply, str):
        return None
    reply = _URL_RE.sub("", reply).replace("*", "").replace("#", "").strip()
    if not reply or len(reply) > MAX_REPLY_CHARS:
        return None
    has_han = bool(_HAN_RE.search(reply))
    # The caller hears the reply: one in the wrong language is worse than the reviewed retrieval answer.
    if (language == "zh") != has_han:
        return None
    return reply
