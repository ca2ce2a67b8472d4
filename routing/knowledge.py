"""The knowledge base: one YAML file per topic, validated at start-up with errors that name file and entry.

File format (routing/knowledge/<topic_id>.yaml)::

    topic: work_permit_apply
    entries:
      - id: work_permit_apply.documents      # unique across the KB
        source: [G3, G22]                    # keys of the source list, sources.yaml beside the topic files
        confidence: high | medium | low      # low: the answer says to confirm, or offers a person
        questions: {en: [...], zh: [...]}    # example phrasings, matched against callers' questions
        answer: {en: "...", zh: "..."}       # two to four short sentences, written for the ear

The source list (routing/knowledge/sources.yaml) gives each source key its document title, publisher, date, URL
and grade. Where a knowledge folder has one, every entry's source keys must be in it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from routing.topics import LANGUAGES, TOPICS

CONFIDENCES = ("high", "medium", "low")
SOURCES_FILE = "sources.yaml"  # the source list: beside the topic files, not a topic
SOURCE_GRADES = ("government", "news", "commercial")


class KnowledgeError(ValueError):
    """The knowledge base (or prompts) cannot be used as written; the message says where and why."""


@dataclass(frozen=True)
class KnowledgeEntry:
    id: str
    topic: str
    source: tuple[str, ...]
    confidence: str
    questions: dict[str, tuple[str, ...]]  # language -> example phrasings
    answer: dict[str, str]  # language -> spoken answer


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    grade: str  # government | news | commercial
    publisher: str | None = None
    date: str | None = None
    url: str | None = None
    note: str | None = None  # e.g. why there is no page address


@dataclass(frozen=True)
class KnowledgeBase:
    entries: tuple[KnowledgeEntry, ...]
    digest: str  # hash of the content: keys the embedding cache
    # Empty when the folder has no source list.
    sources: dict[str, Source] = field(default_factory=dict, hash=False, compare=False)

    def by_id(self, entry_id: str) -> KnowledgeEntry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(e.topic for e in self.entries)


def _require_mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise KnowledgeError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _bilingual_text(value: Any, where: str) -> dict[str, str]:
    value = _require_mapping(value, where)
    out: dict[str, str] = {}
    for lang in LANGUAGES:
        text = value.get(lang)
        if text is None:
            raise KnowledgeError(f"{where}: missing language {lang!r}")
        if not isinstance(text, str) or not text.strip():
            raise KnowledgeError(f"{where}.{lang}: expected non-empty text")
        out[lang] = text.strip()
    extra = set(value) - set(LANGUAGES)
    if extra:
        raise KnowledgeError(f"{where}: unknown language(s) {sorted(extra)} (served: {list(LANGUAGES)})")
    return out


def _bilingual_list(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    value = _require_mapping(value, where)
    out: dict[str, tuple[str, ...]] = {}
    for lang in LANGUAGES:
        items = value.get(lang)
        if items is None:
            raise KnowledgeError(f"{where}: missing language {lang!r}")
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not items:
            raise KnowledgeError(f"{where}.{lang}: expected a non-empty list of phrasings")
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise KnowledgeError(f"{where}.{lang}[{i}]: expected non-empty text")
        out[lang] = tuple(item.strip() for item in items)
    extra = set(value) - set(LANGUAGES)
    if extra:
        raise KnowledgeError(f"{where}: unknown language(s) {sorted(extra)} (served: {list(LANGUAGES)})")
    return out


def parse_topic_file(data: Any, where: str) -> list[KnowledgeEntry]:
    data = _require_mapping(data, where)
    topic = data.get("topic")
    if topic not in TOPICS:
        raise KnowledgeError(f"{where}: unknown topic {topic!r} (topic ids are listed in routing/topics.py)")
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise KnowledgeError(f"{where}: 'entries' must be a non-empty list")
    entries = []
    for i, raw in enumerate(raw_entries):
        raw = _require_mapping(raw, f"{where} entries[{i}]")
        entry_id = raw.get("id")
        if not isinstance(entry_id, str) or not entry_id.strip():
            raise KnowledgeError(f"{where} entries[{i}]: missing 'id'")
        here = f"{where} entry {entry_id!r}"
        unknown = set(raw) - {"id", "source", "confidence", "questions", "answer", "note"}
        if unknown:
            raise KnowledgeError(f"{here}: unknown field(s) {sorted(unknown)}")
        source = raw.get("source", [])
        if isinstance(source, str):
            source = [source]
        if not isinstance(source, list) or not all(isinstance(s, str) for s in source):
            raise KnowledgeError(f"{here}: 'source' must be a list of source keys")
        confidence = raw.get("confidence")
        if confidence not in CONFIDENCES:
            raise KnowledgeError(f"{here}: 'confidence' must be one of {list(CONFIDENCES)}, got {confidence!r}")
        entries.append(
            KnowledgeEntry(
                id=entry_id.strip(),
                topic=topic,
                source=tuple(source),
                confidence=confidence,
                questions=_bilingual_list(raw.get("questions"), f"{here} questions"),
                answer=_bilingual_text(raw.get("answer"), f"{here} answer"),
            )
        )
    return entries


def parse_sources(data: Any, where: str = SOURCES_FILE) -> dict[str, Source]:
    data = _require_mapping(data, where)
    raw_sources = _require_mapping(data.get("sources"), f"{where} sources")
    out: dict[str, Source] = {}
    for key, raw in raw_sources.items():
        here = f"{where} source {key!r}"
        raw = _require_mapping(raw, here)
        unknown = set(raw) - {"title", "grade", "publisher", "date", "url", "note"}
        if unknown:
            raise KnowledgeError(f"{here}: unknown field(s) {sorted(unknown)}")
        title = raw.get("title")
        if not isinstance(title, str) or not title.strip():
            raise KnowledgeError(f"{here}: missing 'title'")
        if raw.get("grade") not in SOURCE_GRADES:
            raise KnowledgeError(f"{here}: 'grade' must be one of {list(SOURCE_GRADES)}, got {raw.get('grade')!r}")
        url = raw.get("url")
        if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise KnowledgeError(f"{here}: 'url' must start with http:// or https://")
        if url is None and not raw.get("note"):
            raise KnowledgeError(f"{here}: without a 'url', a 'note' must say where the text was read")
        optional = {name: str(raw[name]) for name in ("publisher", "date", "note") if raw.get(name) is not None}
        out[str(key)] = Source(key=str(key), title=title.strip(), grade=raw["grade"], url=url, **optional)
    return out


def load_knowledge(directory: Path) -> KnowledgeBase:
    directory = Path(directory)
    if not directory.is_dir():
        raise KnowledgeError(f"knowledge directory not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.name != SOURCES_FILE)
    if not files:
        raise KnowledgeError(f"no knowledge files (*.yaml) in {directory}")
    digest = hashlib.sha256()
    entries: list[KnowledgeEntry] = []
    seen: dict[str, str] = {}
    for path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise KnowledgeError(f"{path.name}: not valid YAML: {exc}") from exc
        for entry in parse_topic_file(data, path.name):
            if entry.id in seen:
                raise KnowledgeError(f"{path.name}: duplicate entry id {entry.id!r} (first in {seen[entry.id]})")
            seen[entry.id] = path.name
            entries.append(entry)
    sources: dict[str, Source] = {}
    sources_path = directory / SOURCES_FILE
    if sources_path.is_file():
        try:
            sources = parse_sources(yaml.safe_load(sources_path.read_bytes()))
        except yaml.YAMLError as exc:
            raise KnowledgeError(f"{SOURCES_FILE}: not valid YAML: {exc}") from exc
        for entry in entries:
            missing = [key for key in entry.source if key not in sources]
            if missing:
                raise KnowledgeError(
                    f"{seen[entry.id]} entry {entry.id!r}: source key(s) {missing} not listed in {SOURCES_FILE}")
    return KnowledgeBase(entries=tuple(entries), digest=digest.hexdigest(), sources=sources)
