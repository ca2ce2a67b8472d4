"""The knowledge base: one YAML file per topic, validated at start-up with errors that name file and entry.

File format (routing/knowledge/<topic_id>.yaml)::

    topic: work_permit_apply
    entries:
      - id: work_permit_apply.documents      # unique across the KB
        source: [G3, G22]                    # keys of the source list (sources.yaml)
        confidence: high | medium | low      # low: the answer says to confirm, or offers a person
        questions: {en: [...], zh: [...]}    # example phrasings, matched against callers' questions
        answer: {en: "...", zh: "..."}       # two to four short sentences, written for the ear
        valid_from: 2026-01-01               # optional: the rule the answer states applies from this day
        review_by: 2026-07-01                # optional: a supervisor re-checks the answer by this day

A source is a key of the source list or a mapping {title: ..., url: https://...}. The source list
(routing/knowledge/sources.yaml) gives each source key its document title, publisher, date, URL and grade; where a
knowledge folder has one, every entry's source keys must be in it. The same validation serves the
files and the knowledge editor (server/knowledge): `parse_knowledge` takes file texts from either, and
`knowledge_files` writes a knowledge base back in this format (`hotline knowledge export`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from routing.topics import LANGUAGES, TOPICS

CONFIDENCES = ("high", "medium", "low")
SOURCES_FILE = "sources.yaml"  # the source list: beside the topic files, not a topic
SOURCE_GRADES = ("government", "news", "commercial")
# Limits that keep an entry speakable and the index small; the editor's forms apply the same ones.
MAX_ID_CHARS = 96  # the store's entry_id column
MAX_QUESTION_CHARS = 200
MAX_QUESTIONS = 40  # per language
MAX_ANSWER_CHARS = 800  # about a minute of speech
MAX_NOTE_CHARS = 2000
MAX_SOURCES = 12
ID_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
ENTRY_FIELDS = ("id", "source", "confidence", "questions", "answer", "valid_from", "review_by", "note")


class KnowledgeError(ValueError):
    """The knowledge base (or prompts) cannot be used as written; the message says where and why."""


@dataclass(frozen=True)
class SourceLink:
    """A document cited in place, by title and URL (the editor's form), instead of by a key of the source list."""

    title: str
    url: str


@dataclass(frozen=True)
class Source:
    """An entry of the source list: what a source key stands for."""

    key: str
    title: str
    grade: str  # government | news | commercial
    publisher: str | None = None
    date: str | None = None
    url: str | None = None
    note: str | None = None  # e.g. why there is no page address


@dataclass(frozen=True)
class KnowledgeEntry:
    id: str
    topic: str
    source: tuple[str | SourceLink, ...]  # keys of the source list, or documents cited in place
    confidence: str
    questions: dict[str, tuple[str, ...]]  # language -> example phrasings
    answer: dict[str, str]  # language -> spoken answer
    valid_from: dt.date | None = None
    review_by: dt.date | None = None
    note: str | None = None

    def overdue(self, today: dt.date) -> bool:
        """Past its review-by day: the answer may state a rule that has changed."""
        return self.review_by is not None and self.review_by < today


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


def _bilingual_text(value: Any, where: str, *, max_chars: int = MAX_ANSWER_CHARS) -> dict[str, str]:
    value = _require_mapping(value, where)
    out: dict[str, str] = {}
    for lang in LANGUAGES:
        text = value.get(lang)
        if text is None:
            raise KnowledgeError(f"{where}: missing language {lang!r}")
        if not isinstance(text, str) or not text.strip():
            raise KnowledgeError(f"{where}.{lang}: expected non-empty text")
        if len(text.strip()) > max_chars:
            raise KnowledgeError(f"{where}.{lang}: {len(text.strip())} characters (at most {max_chars})")
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
        if len(items) > MAX_QUESTIONS:
            raise KnowledgeError(f"{where}.{lang}: {len(items)} phrasings (at most {MAX_QUESTIONS})")
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise KnowledgeError(f"{where}.{lang}[{i}]: expected non-empty text")
            if len(item.strip()) > MAX_QUESTION_CHARS:
                raise KnowledgeError(f"{where}.{lang}[{i}]: {len(item.strip())} characters (at most {MAX_QUESTION_CHARS})")
        phrasings = tuple(item.strip() for item in items)
        if len(set(phrasings)) != len(phrasings):
            raise KnowledgeError(f"{where}.{lang}: the same phrasing twice")
        out[lang] = phrasings
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
        entry_id = entry_id.strip()
        if len(entry_id) > MAX_ID_CHARS or not ID_RE.match(entry_id):
            raise KnowledgeError(f"{here}: an id is topic.name in lower-case letters, digits and _ "
                                 f"(at most {MAX_ID_CHARS} characters)")
        unknown = set(raw) - set(ENTRY_FIELDS)
        if unknown:
            raise KnowledgeError(f"{here}: unknown field(s) {sorted(unknown)}")
        confidence = raw.get("confidence")
        if confidence not in CONFIDENCES:
            raise KnowledgeError(f"{here}: 'confidence' must be one of {list(CONFIDENCES)}, got {confidence!r}")
        valid_from = _date(raw.get("valid_from"), f"{here} valid_from")
        review_by = _date(raw.get("review_by"), f"{here} review_by")
        if valid_from and review_by and review_by < valid_from:
            raise KnowledgeError(f"{here}: review_by ({review_by}) is before valid_from ({valid_from})")
        note = raw.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
            raise KnowledgeError(f"{here}: 'note' must be text of at most {MAX_NOTE_CHARS} characters")
        entries.append(
            KnowledgeEntry(
                id=entry_id,
                topic=topic,
                source=_sources(raw.get("source", []), f"{here} source"),
                confidence=confidence,
                questions=_bilingual_list(raw.get("questions"), f"{here} questions"),
                answer=_bilingual_text(raw.get("answer"), f"{here} answer"),
                valid_from=valid_from,
                review_by=review_by,
                note=note.strip() if isinstance(note, str) and note.strip() else None,
            )
        )
    return entries


def _date(value: Any, where: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise KnowledgeError(f"{where}: expected a date YYYY-MM-DD, got {value!r}")


def _sources(value: Any, where: str) -> tuple[str | SourceLink, ...]:
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_SOURCES:
        raise KnowledgeError(f"{where}: expected a list of at most {MAX_SOURCES} sources")
    out: list[str | SourceLink] = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item.strip() and len(item) <= 64:
            out.append(item.strip())
            continue
        if isinstance(item, dict) and set(item) <= {"title", "url"}:
            title, url = item.get("title"), item.get("url")
            if (isinstance(title, str) and title.strip() and len(title) <= 300 and isinstance(url, str)
                    and re.match(r"^https?://\S+$", url.strip()) and len(url) <= 500):
                out.append(SourceLink(title=title.strip(), url=url.strip()))
                continue
        raise KnowledgeError(f"{where}[{i}]: a source is a key (text) or {{title: ..., url: http(s)://...}}")
    return tuple(out)


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
    sources = None
    sources_path = Path(directory) / SOURCES_FILE
    if sources_path.is_file():
        try:
            sources = parse_sources(yaml.safe_load(sources_path.read_bytes()))
        except yaml.YAMLError as exc:
            raise KnowledgeError(f"{SOURCES_FILE}: not valid YAML: {exc}") from exc
    return parse_knowledge(read_knowledge_files(directory), sources=sources)


def read_knowledge_files(path: Path) -> list[tuple[str, bytes]]:
    """(file name, content) of a knowledge folder's *.yaml files in name order, or of one file."""
    path = Path(path)
    if path.is_file():
        return [(path.name, path.read_bytes())]
    if not path.is_dir():
        raise KnowledgeError(f"knowledge directory not found: {path}")
    files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.name != SOURCES_FILE)
    if not files:
        raise KnowledgeError(f"no knowledge files (*.yaml) in {path}")
    return [(p.name, p.read_bytes()) for p in files]


def parse_knowledge(files: Iterable[tuple[str, bytes | str]], *, sources: dict[str, Source] | None = None) -> KnowledgeBase:
    """The knowledge base in these topic files (name, YAML text), validated; entries in file order. A file may also
    hold several topics as a list of topic mappings (one-file exports)."""
    digest = hashlib.sha256()
    entries: list[KnowledgeEntry] = []
    seen: dict[str, str] = {}
    for name, raw in files:
        raw = raw.encode("utf-8") if isinstance(raw, str) else raw
        digest.update(name.encode() + b"\0" + raw + b"\0")
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise KnowledgeError(f"{name}: not valid YAML: {exc}") from exc
        parts = data if isinstance(data, list) else [data]
        for part in parts:
            for entry in parse_topic_file(part, name):
                if entry.id in seen:
                    raise KnowledgeError(f"{name}: duplicate entry id {entry.id!r} (first in {seen[entry.id]})")
                seen[entry.id] = name
                entries.append(entry)
    if not entries:
        raise KnowledgeError("the knowledge base has no entries")
    if sources is not None:  # a source list is given: every key an entry cites must be in it
        for entry in entries:
            missing = [key for key in entry.source if isinstance(key, str) and key not in sources]
            if missing:
                raise KnowledgeError(
                    f"{seen[entry.id]} entry {entry.id!r}: source key(s) {missing} not listed in {SOURCES_FILE}")
    return KnowledgeBase(entries=tuple(entries), digest=digest.hexdigest(), sources=sources or {})


def entry_document(entry: KnowledgeEntry) -> dict[str, Any]:
    """An entry as it is written in a topic file (the inverse of parse_topic_file for one entry)."""
    doc: dict[str, Any] = {"id": entry.id}
    if entry.source:
        doc["source"] = [s if isinstance(s, str) else {"title": s.title, "url": s.url} for s in entry.source]
    doc["confidence"] = entry.confidence
    if entry.valid_from:
        doc["valid_from"] = entry.valid_from
    if entry.review_by:
        doc["review_by"] = entry.review_by
    doc["questions"] = {lang: list(entry.questions[lang]) for lang in LANGUAGES}
    doc["answer"] = {lang: entry.answer[lang] for lang in LANGUAGES}
    if entry.note:
        doc["note"] = entry.note
    return doc


def dump_topic(topic: str, entries: Iterable[KnowledgeEntry]) -> str:
    data = {"topic": topic, "entries": [entry_document(e) for e in entries]}
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120, default_flow_style=False)


def knowledge_files(entries: Iterable[KnowledgeEntry]) -> list[tuple[str, str]]:
    """One `<topic>.yaml` per topic, in file-name order, entries in their order: what load_knowledge reads back as
    the same knowledge base (same entries, same order, so the same retrieval)."""
    by_topic: dict[str, list[KnowledgeEntry]] = {}
    for entry in entries:
        by_topic.setdefault(entry.topic, []).append(entry)
    return [(f"{topic}.yaml", dump_topic(topic, by_topic[topic])) for topic in sorted(by_topic)]
