"""The knowledge base and prompts are validated at start-up with errors that say what is wrong and where."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from routing.knowledge import KnowledgeError, load_knowledge, parse_topic_file
from routing.prompts import REQUIRED_KEYS, Prompts
from routing.topics import TOPICS
from routing_helpers import FIXTURES, REPO


def _entry(**overrides):
    entry = {
        "id": "work_permit_apply.x",
        "source": ["G3"],
        "confidence": "high",
        "questions": {"en": ["How do I apply?"], "zh": ["怎么申请？"]},
        "answer": {"en": "Like this.", "zh": "这样。"},
    }
    entry.update(overrides)
    return entry


def _write(folder: Path, name: str, data) -> None:
    (folder / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_fixture_kb_loads_with_both_languages_everywhere():
    kb = load_knowledge(FIXTURES / "knowledge")
    assert kb.entries
    for entry in kb.entries:
        assert entry.topic in TOPICS
        assert set(entry.answer) == {"en", "zh"} and set(entry.questions) == {"en", "zh"}
    assert len({e.id for e in kb.entries}) == len(kb.entries)


def test_missing_language_is_named():
    bad = _entry(answer={"en": "Only English."})
    with pytest.raises(KnowledgeError, match=r"work_permit_apply\.x.*answer.*missing language 'zh'"):
        parse_topic_file({"topic": "work_permit_apply", "entries": [bad]}, "f.yaml")
    bad = _entry(questions={"zh": ["怎么申请？"]})
    with pytest.raises(KnowledgeError, match="missing language 'en'"):
        parse_topic_file({"topic": "work_permit_apply", "entries": [bad]}, "f.yaml")


def test_unknown_topic_is_named():
    with pytest.raises(KnowledgeError, match="unknown topic 'visa_lottery'"):
        parse_topic_file({"topic": "visa_lottery", "entries": [_entry()]}, "f.yaml")


def test_duplicate_id_across_files(tmp_path):
    _write(tmp_path, "a.yaml", {"topic": "work_permit_apply", "entries": [_entry()]})
    _write(tmp_path, "b.yaml", {"topic": "work_permit_extend", "entries": [_entry()]})
    with pytest.raises(KnowledgeError, match=r"duplicate entry id 'work_permit_apply\.x' \(first in a\.yaml\)"):
        load_knowledge(tmp_path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"confidence": "certain"}, "confidence"),
        ({"answer": {"en": "", "zh": "好"}}, "non-empty"),
        ({"questions": {"en": [], "zh": ["x"]}}, "non-empty list"),
        ({"answer": {"en": "a", "zh": "b", "fr": "c"}}, "unknown language"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_bad_entry_fields(overrides, message):
    with pytest.raises(KnowledgeError, match=message):
        parse_topic_file({"topic": "work_permit_apply", "entries": [_entry(**overrides)]}, "f.yaml")


def test_bad_yaml_and_empty_folder(tmp_path):
    with pytest.raises(KnowledgeError, match="no knowledge files"):
        load_knowledge(tmp_path)
    (tmp_path / "x.yaml").write_text("topic: [unclosed", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="not valid YAML"):
        load_knowledge(tmp_path)


def test_digest_changes_with_content(tmp_path):
    _write(tmp_path, "a.yaml", {"topic": "work_permit_apply", "entries": [_entry()]})
    first = load_knowledge(tmp_path).digest
    _write(tmp_path, "a.yaml", {"topic": "work_permit_apply", "entries": [_entry(answer={"en": "B.", "zh": "乙。"})]})
    assert load_knowledge(tmp_path).digest != first


def test_prompts_fixture_and_formatting():
    prompts = Prompts.load(FIXTURES / "prompts.yaml")
    text = prompts.text("queue_position", "en", position=3, wait_minutes=5)
    assert "3" in text and "5" in text and "{" not in text
    both = prompts.text("language_not_served", "both")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in both) and any(ch.isascii() and ch.isalpha() for ch in both)


def test_prompts_validation_errors():
    good = yaml.safe_load((FIXTURES / "prompts.yaml").read_text(encoding="utf-8"))
    missing = {"prompts": {k: v for k, v in good["prompts"].items() if k != "goodbye"}}
    with pytest.raises(KnowledgeError, match="missing prompt.*goodbye"):
        Prompts.parse(missing)
    no_zh = {"prompts": {**good["prompts"], "please_hold": {"en": "Hold."}}}
    with pytest.raises(KnowledgeError, match="please_hold.*missing language 'zh'"):
        Prompts.parse(no_zh)
    no_both = {"prompts": {**good["prompts"], "greeting": {"en": "Hi.", "zh": "你好。"}}}
    with pytest.raises(KnowledgeError, match="greeting.*needs 'both'"):
        Prompts.parse(no_both)
    mismatched = {"prompts": {**good["prompts"], "queue_position": {"en": "{position}", "zh": "{wait_minutes}"}}}
    with pytest.raises(KnowledgeError, match="different placeholders"):
        Prompts.parse(mismatched)


# --- the shipped content must pass the same validation --------------------------------------------------------------
def test_shipped_kb_covers_every_topic_in_both_languages():
    kb = load_knowledge(REPO / "routing" / "knowledge")
    assert kb.topics == set(TOPICS), f"topics without entries: {set(TOPICS) - kb.topics}"


def test_shipped_prompts_have_every_required_key():
    prompts = Prompts.load(REPO / "prompts" / "prompts.yaml")
    for key in REQUIRED_KEYS:
        for lang in ("en", "zh"):
            assert prompts.text(key, lang, position=2, wait_minutes=4).strip()


def test_shipped_kb_cites_every_source_by_title_and_address():
    kb = load_knowledge(REPO / "routing" / "knowledge")
    used = {key for entry in kb.entries for key in entry.source}
    assert used and used <= set(kb.sources)
    for key in used:
        source = kb.sources[key]
        assert source.title and source.grade in ("government", "news", "commercial")
        assert source.url or source.note, key  # a source read without a page address says where it was read
    # The knowledge base names no file outside this repository.
    for path in (REPO / "routing" / "knowledge").iterdir():
        assert "shared/" not in path.read_text(encoding="utf-8"), path.name


def test_unlisted_source_key_is_named(tmp_path):
    _write(tmp_path, "a.yaml", {"topic": "work_permit_apply", "entries": [_entry(source=["G3", "X9"])]})
    _write(tmp_path, "sources.yaml", {"sources": {"G3": {"title": "How to get a foreigner's work permit",
                                                         "grade": "government", "url": "https://example.org/g3"}}})
    with pytest.raises(KnowledgeError, match=r"a\.yaml entry 'work_permit_apply\.x': source key\(s\) \['X9'\]"):
        load_knowledge(tmp_path)
    _write(tmp_path, "a.yaml", {"topic": "work_permit_apply", "entries": [_entry(source=["G3"])]})
    kb = load_knowledge(tmp_path)  # the source list is not read as a topic file
    assert [e.id for e in kb.entries] == ["work_permit_apply.x"] and kb.sources["G3"].url == "https://example.org/g3"
    _write(tmp_path, "sources.yaml", {"sources": {"G3": {"title": "t", "grade": "government"}}})
    with pytest.raises(KnowledgeError, match="without a 'url', a 'note'"):
        load_knowledge(tmp_path)
