"""The spoken prompts (prompts/prompts.yaml), validated at start-up like the knowledge base.

Format: ``prompts: {key: {en: "...", zh: "..."}}``; bilingual prompts (greeting, language_not_served) add
``both:`` — one string that says it in both languages, spoken when the caller's language is not known yet.
Placeholders use ``str.format`` names, e.g. ``{position}``, ``{wait_minutes}``.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from routing.knowledge import KnowledgeError
from routing.topics import LANGUAGES

REQUIRED_KEYS = (
    "greeting",
    "please_hold",
    "queue_position",
    "transferring",
    "no_answer_transfer",
    "goodbye",
    "repeat",
    "no_input_reprompt",
    "language_not_served",
    "callback_offer",
    "callback_confirmed",
    "agent_unavailable",
    "service_unavailable",
)
BILINGUAL_KEYS = ("greeting", "language_not_served")
PROMPT_LANGUAGES = (*LANGUAGES, "both")


def default_prompts_path() -> Path:
    return Path(__file__).resolve().parent.parent / "prompts" / "prompts.yaml"


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass(frozen=True)
class Prompts:
    texts: dict[str, dict[str, str]]  # key -> language (en | zh | both) -> template

    @classmethod
    def load(cls, path: Path | str | None = None) -> "Prompts":
        path = Path(path) if path is not None else default_prompts_path()
        if not path.is_file():
            raise KnowledgeError(f"prompts file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise KnowledgeError(f"{path.name}: not valid YAML: {exc}") from exc
        return cls.parse(data, where=path.name)

    @classmethod
    def parse(cls, data: Any, *, where: str = "prompts") -> "Prompts":
        if not isinstance(data, dict) or not isinstance(data.get("prompts"), dict):
            raise KnowledgeError(f"{where}: expected a top-level mapping 'prompts: {{key: {{en, zh}}}}'")
        texts: dict[str, dict[str, str]] = {}
        for key, value in data["prompts"].items():
            if not isinstance(value, dict):
                raise KnowledgeError(f"{where} prompt {key!r}: expected a mapping of languages")
            unknown = set(value) - set(PROMPT_LANGUAGES)
            if unknown:
                raise KnowledgeError(f"{where} prompt {key!r}: unknown language(s) {sorted(unknown)}")
            for lang in LANGUAGES:
                if lang not in value:
                    raise KnowledgeError(f"{where} prompt {key!r}: missing language {lang!r}")
            if key in BILINGUAL_KEYS and "both" not in value:
                raise KnowledgeError(f"{where} prompt {key!r}: bilingual prompt needs 'both'")
            for lang, text in value.items():
                if not isinstance(text, str) or not text.strip():
                    raise KnowledgeError(f"{where} prompt {key!r}.{lang}: expected non-empty text")
            fields = {lang: _fields(text) for lang, text in value.items()}
            if len({frozenset(f) for f in fields.values()}) > 1:
                # A placeholder in one language only would be silently missing in the other.
                raise KnowledgeError(f"{where} prompt {key!r}: languages use different placeholders {fields}")
            texts[str(key)] = {lang: text.strip() for lang, text in value.items()}
        missing = [k for k in REQUIRED_KEYS if k not in texts]
        if missing:
            raise KnowledgeError(f"{where}: missing prompt(s) {missing}")
        return cls(texts=texts)

    def has(self, key: str) -> bool:
        return key in self.texts

    def text(self, key: str, language: str, **params: Any) -> str:
        """The prompt in `language` (en | zh | both); `both` falls back to en+zh for one-language prompts."""
        try:
            variants = self.texts[key]
        except KeyError:
            raise KeyError(f"unknown prompt {key!r}") from None
        if language == "both" and "both" not in variants:
            template = variants["en"] + " " + variants["zh"]
        elif language in variants:
            template = variants[language]
        else:
            raise ValueError(f"prompt language must be one of {PROMPT_LANGUAGES}, got {language!r}")
        return template.format(**params)
