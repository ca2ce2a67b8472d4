"""The knowledge base in the store: versions, publish and roll-back, export -> import round trip, the
router's index swapped without a restart (also when another process publishes), and the missed-question groups.

The real router (shipped knowledge base, multilingual-e5 embeddings) decides everywhere a decision is asserted."""
from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from routing.knowledge import KnowledgeBase, KnowledgeError, load_knowledge, parse_knowledge, parse_topic_file, read_knowledge_files
from routing.router import Router
from routing_helpers import REPO, real_settings
from server.knowledge.cli import write_export
from server.knowledge.missed import group_labels, language_means, miss_reason
from server.knowledge.service import KnowledgeService, changed_entries
from server.knowledge.store import KnowledgeConflict, KnowledgeStore, stored_document
from server.store import Store


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    r = Router.load(real_settings(tmp_path_factory.mktemp("kb")))
    yield r
    r.close()


def eval_questions() -> list[dict]:
    """Every labelled question of the evaluation set (one file or a development/test split)."""
    items = []
    for path in sorted((REPO / "routing" / "eval").glob("*.yaml")):
        items.extend((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("questions") or [])
    assert len(items) >= 200
    return items


async def fresh_store(tmp_path: Path, name: str = "kb.db") -> Store:
    store = Store(url=f"sqlite+aiosqlite:///{tmp_path / name}")
    await store.migrate()
    return store


def decisions(router: Router, items: list[dict]) -> list[tuple]:
    out = []
    for q in items:
        d = router.decide(q["text"], language=q["language"] if q["language"] in ("en", "zh") else "unknown")
        out.append((d.route, d.topic, d.entry_id, d.answer, round(d.score, 9), round(d.margin, 9), d.reason))
    return out


async def test_export_import_round_trip_keeps_every_decision(router, tmp_path):
    """YAML -> store -> export -> import into another store -> the router decides every evaluation question the same."""
    first = await fresh_store(tmp_path, "a.db")
    second = await fresh_store(tmp_path, "b.db")
    try:
        await KnowledgeStore(first).seed(router.kb)
        exported = await KnowledgeStore(first).knowledge()
        write_export(exported, tmp_path / "export")
        write_export(exported, tmp_path / "one.yaml")
        assert parse_knowledge(read_knowledge_files(tmp_path / "one.yaml")).entries == exported.entries
        imported = parse_knowledge(read_knowledge_files(tmp_path / "export"))
        target = KnowledgeStore(second)
        await target.seed(load_knowledge(REPO / "tests" / "fixtures" / "routing" / "knowledge"))  # something else first
        version, changed = await target.import_knowledge(imported, author="test")
        assert version == 2 and changed
        round_tripped = await target.knowledge()
    finally:
        await first.close()
        await second.close()
    assert round_tripped.entries == router.kb.entries  # same entries, same order, every field
    items = eval_questions()
    other = router.with_index(await asyncio.to_thread(router.build_index, round_tripped))
    assert decisions(other, items) == decisions(router, items)


async def test_drafts_publish_history_and_rollback(tmp_path):
    await drafts_publish_history_and_rollback(await fresh_store(tmp_path))


@pytest.mark.postgres
async def test_drafts_publish_history_and_rollback_on_postgresql(pg_url):
    store = Store(url=pg_url)
    await store.migrate()
    await drafts_publish_history_and_rollback(store)


@pytest.mark.postgres
async def test_processes_starting_together_seed_the_knowledge_base_once(fresh_pg_url):
    """Servers sharing one database start together: each finds it empty and seeds it. Exactly one seed counts; the
    others return False instead of failing the start on the unique revision, and the base holds each entry once."""
    stores = [Store(url=fresh_pg_url) for _ in range(4)]
    await stores[0].migrate()
    kb = load_knowledge(REPO / "routing" / "knowledge")
    try:
        results = await asyncio.gather(*(KnowledgeStore(s).seed(kb) for s in stores))
        assert sorted(results) == [False, False, False, True]
        k = KnowledgeStore(stores[0])
        assert await k.version() == 1
        rows = await k.entries()
        assert sorted(r.entry_id for r in rows) == sorted(e.id for e in kb.entries)  # each entry once
        assert all(r.revision == 1 for r in rows)
    finally:
        for s in stores:
            await s.close()


async def drafts_publish_history_and_rollback(store: Store) -> None:
    kb = load_knowledge(REPO / "routing" / "knowledge")
    k = KnowledgeStore(store)
    try:
        assert await k.seed(kb, author="seed") and not await k.seed(kb)  # a second seed does nothing
        assert await k.version() == 1
        entry = kb.entries[0]
        doc = stored_document(entry)
        doc["answer"] = {"en": "A new answer.", "zh": "新的回答。"}
        edited = parse_topic_file({"topic": entry.topic, "entries": [doc]}, "test")[0]
        await k.save_draft(edited, author="sam")
        assert (await k.knowledge()).by_id(entry.id).answer == entry.answer  # not live before publishing
        assert (await k.knowledge(drafts=True)).by_id(entry.id).answer["en"] == "A new answer."
        version, changed = await k.publish(author="sam")
        assert (version, changed) == (2, [entry.id])
        assert (await k.knowledge()).by_id(entry.id).answer["en"] == "A new answer."
        assert await k.publish(author="sam") == (2, [])  # nothing to publish: nothing changes
        history = await k.history(entry.id)
        assert [(r.revision, r.action, r.author) for r in history] == [(2, "edit", "sam"), (1, "seed", "seed")]
        version, row = await k.rollback(entry.id, 1, author="lee")
        assert version == 3 and row.revision == 3 and row.action == "rollback"
        assert (await k.knowledge()).by_id(entry.id).answer == entry.answer
        # A new entry may not take an existing id (in any topic).
        clash = stored_document(kb.entries[5])
        with pytest.raises(KnowledgeConflict, match="exists already"):
            other_topic = "salon" if kb.entries[5].topic != "salon" else "ebook"
            await k.save_draft(parse_topic_file({"topic": other_topic, "entries": [clash]}, "t")[0], author="sam",
                               create=True)
    finally:
        await store.close()


def test_editor_validation_is_the_loaders():
    good = {"id": "salon.x", "confidence": "high", "questions": {"en": ["q?"], "zh": ["问？"]},
            "answer": {"en": "a.", "zh": "答。"}, "source": [{"title": "Rules", "url": "https://example.org/r"}],
            "valid_from": "2026-01-01", "review_by": "2026-06-30"}
    entry = parse_topic_file({"topic": "salon", "entries": [good]}, "t")[0]
    assert entry.review_by == dt.date(2026, 6, 30) and entry.overdue(dt.date(2026, 7, 1))
    assert not entry.overdue(dt.date(2026, 6, 30))
    for bad, message in (({"answer": {"en": "a."}}, "missing language 'zh'"),
                         ({"answer": {"en": "a.", "zh": " "}}, "non-empty"),
                         ({"answer": {"en": "x" * 801, "zh": "答"}}, "at most 800"),
                         ({"questions": {"en": ["q" * 201], "zh": ["问"]}}, "at most 200"),
                         ({"review_by": "2025-01-01"}, "before valid_from"),
                         ({"valid_from": "soon"}, "expected a date"),
                         ({"source": [{"title": "x", "url": "ftp://x"}]}, "a source is"),
                         ({"id": "No Spaces"}, "topic.name")):
        with pytest.raises(KnowledgeError, match=message):
            parse_topic_file({"topic": "salon", "entries": [{**good, **bad}]}, "t")
    with pytest.raises(KnowledgeError, match="unknown topic"):
        parse_topic_file({"topic": "visa_lottery", "entries": [good]}, "t")


class CountingEmbedder:
    """The real embedder, counting the texts it embeds."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, 0

    def embed(self, texts, *, passage: bool = False):
        self.texts += len(texts)
        return self.inner.embed(texts, passage=passage)


async def test_a_publish_elsewhere_reaches_the_router_without_a_restart(router, tmp_path):
    """A second writer (another process, the CLI) publishes; this process's poll installs a new index, embedding only
    the new phrasing, and re-synthesizes only changed answers (here none)."""
    store = await fresh_store(tmp_path)
    spoken: list[list[str]] = []
    done = threading.Event()
    embedder = CountingEmbedder(router.retriever.embedder)
    # A cache of its own: with the shared one, an earlier run may already hold the rebuilt matrix on disk.
    live = Router.load(real_settings(tmp_path, cache_dir=tmp_path / "embeddings"), embedder=embedder)
    components = SimpleNamespace(router=live,
                                 cache_answers=lambda entries: (spoken.append([e.id for e in entries]), done.set()))
    service = KnowledgeService(app=SimpleNamespace(state=SimpleNamespace(store=store)),
                               settings=SimpleNamespace(knowledge_poll_s=0.05, routing=None))
    question = "What happens if my employer goes bankrupt?"
    try:
        await service.attach(components)
        assert service.version == 1 and live.decide(question, language="en").topic == "out_of_scope"
        target = live.kb.by_id("work_permit_cancel.when_who")
        doc = stored_document(target)
        doc["questions"]["en"].append(question)
        writer = KnowledgeStore(store)  # not the service: as another process would
        await writer.save_draft(parse_topic_file({"topic": target.topic, "entries": [doc]}, "t")[0], author="sam")
        embedded_before = embedder.texts
        old_index = live.index
        await writer.publish(author="sam")
        for _ in range(1200):  # up to 60 s: the rebuild runs in a thread and a loaded machine is slow
            if live.index is not old_index:
                break
            await asyncio.sleep(0.05)
        assert live.index is not old_index and service.version == 2
        # Counted before routing again: what the rebuild embedded (routing the question embeds the question too).
        embedded_by_rebuild = embedder.texts - embedded_before
        decision = live.decide(question, language="en")
        assert (decision.route, decision.entry_id) == ("answer", "work_permit_cancel.when_who")
        # Only the new phrasing was embedded: every other row is the old index's vector.
        old_vectors = old_index.retriever.known_vectors()
        new_vectors = live.retriever.known_vectors()
        assert len(new_vectors) == len(old_vectors) + 1
        assert all(np.array_equal(new_vectors[t], v) for t, v in old_vectors.items())
        assert embedded_by_rebuild == 1
        assert not done.wait(0.3) and spoken == []  # a question changed, no answer did: nothing to synthesize
        # An answer changed: its entry (only) is synthesized again, in the background.
        doc["answer"]["en"] = "If your employer closes, it must cancel your work permit. Call us to hear what to do next."
        await writer.save_draft(parse_topic_file({"topic": target.topic, "entries": [doc]}, "t")[0], author="sam")
        await writer.publish(author="sam")
        assert await asyncio.to_thread(done.wait, 10) and spoken == [["work_permit_cancel.when_who"]]
        assert live.decide(question, language="en").answer == doc["answer"]["en"]
    finally:
        await service.stop()
        await store.close()
        live.close()


def test_changed_entries_are_those_with_new_answers():
    kb = load_knowledge(REPO / "routing" / "knowledge")
    assert changed_entries(kb, kb) == []
    assert len(changed_entries(None, kb)) == len(kb.entries)


@pytest.mark.parametrize("route,topic,reason,score,expected", [
    ("clarify", "work_permit_extend", "low_confidence", 0.3, "clarify"),
    ("answer", "out_of_scope", "no_hotline_words", 0.2, "out_of_scope"),
    ("agent", "human_agent", "repeated_low_confidence", 0.2, "transfer_after_misses"),
    ("agent", "human_agent", "explicit_agent_request", 0.9, None),
    ("agent", "human_agent", "language_not_served", 0.0, None),
    ("answer", "work_permit_extend", "bm25+embedding", 0.5, "low_score"),
    ("answer", "work_permit_extend", "bm25+embedding", 0.8, None),
    ("answer", "work_permit_progress", "application_lookup", 1.0, None),
])
def test_which_decisions_are_misses(route, topic, reason, score, expected):
    assert miss_reason(route, topic, reason, score, low_score=0.55) == expected


def test_missed_questions_group_across_languages(router):
    texts = ["Can I bring my pet dog to Shanghai?", "我的宠物狗能带到上海吗？", "can my cat come with me to china",
             "What will the weather be tomorrow?", "明天天气怎么样", "How do I renew my driver's license?",
             "驾照怎么换新？", "What happens if my employer goes bankrupt?", "我的雇主破产了，我怎么办？"]
    labels = group_labels(texts, router.retriever.embed_questions(texts), language_means(router.retriever))
    assert labels[0] == labels[1] == labels[2]  # pets, in both languages
    assert labels[3] == labels[4]  # weather
    assert labels[5] == labels[6]  # driving licence
    assert labels[7] == labels[8]  # a bankrupt employer
    assert len({labels[0], labels[3], labels[5], labels[7]}) == 4


async def test_entries_past_review_by_are_counted_in_metrics(tmp_path):
    from server.metrics import Metrics

    kb = load_knowledge(REPO / "routing" / "knowledge")
    late = stored_document(kb.entries[0])
    late["review_by"] = "2026-03-01"
    kb_late = KnowledgeBase((parse_topic_file({"topic": kb.entries[0].topic, "entries": [late]}, "t")[0],
                             *kb.entries[1:]), digest="late")
    store = await fresh_store(tmp_path)
    await KnowledgeStore(store).seed(kb_late)
    metrics = Metrics()
    service = KnowledgeService(app=SimpleNamespace(state=SimpleNamespace(store=store)), metrics=metrics,
                               settings=SimpleNamespace(knowledge_poll_s=60, routing=None),
                               today=lambda: dt.date(2026, 3, 2))
    try:
        await service.attach(SimpleNamespace(router=object()))  # no index to rebuild: the count is the store's
        text = metrics.render().decode()
        assert "hotline_knowledge_review_overdue 1.0" in text and "hotline_knowledge_version 1.0" in text
        service.today = lambda: dt.date(2026, 3, 1)
        service._update_gauges()
        assert "hotline_knowledge_review_overdue 0.0" in metrics.render().decode()
    finally:
        await service.stop()
        await store.close()


def test_cli_export_edit_import(tmp_path, capsys):
    """`hotline knowledge export` -> edit a file as a reviewer would -> `hotline knowledge import`: one change, one
    new version, in the audit log; a bad file is refused with the loader's message and changes nothing."""
    from server.cli import main

    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert main(["knowledge", "export", str(tmp_path / "kb"), "--db", db]) == 0
    path = tmp_path / "kb" / "work_permit_cancel.yaml"
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["entries"][0]["answer"]["en"] = "A reviewed answer."
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    capsys.readouterr()
    assert main(["knowledge", "import", str(tmp_path / "kb"), "--db", db, "--author", "reviewer"]) == 0
    assert "1 changed, published as version 2" in capsys.readouterr().out
    (tmp_path / "bad.yaml").write_text("topic: work_permit_cancel\nentries:\n  - id: work_permit_cancel.x\n", encoding="utf-8")
    assert main(["knowledge", "import", str(tmp_path / "bad.yaml"), "--db", db]) == 2
    assert "confidence" in capsys.readouterr().err

    async def check() -> None:
        from server.people.auth import AuthService

        store = Store(url=db)
        try:
            k = KnowledgeStore(store)
            assert await k.version() == 2
            assert (await k.knowledge()).by_id(data["entries"][0]["id"]).answer["en"] == "A reviewed answer."
            audit = await AuthService(store=store).audit_entries()
            assert [(a.action, a.user_name) for a in audit][:1] == [("knowledge_import", "reviewer")]
        finally:
            await store.close()

    asyncio.run(check())


async def test_a_publish_is_announced_on_redis(tmp_path):
    """With redis_url, another process reloads on the announcement, long before its poll would see the version."""
    import uuid

    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/13"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable: {exc}")
    store = await fresh_store(tmp_path)
    channel = f"hotline:knowledge:test:{uuid.uuid4().hex}"
    services = []
    for _ in range(2):
        service = KnowledgeService(app=SimpleNamespace(state=SimpleNamespace(store=store)),
                                   settings=SimpleNamespace(knowledge_poll_s=300, routing=real_settings(tmp_path),
                                                            redis_url=url))
        service.channel = channel
        await service.attach(SimpleNamespace(router=object()))
        services.append(service)
    publisher, other = services
    try:
        await asyncio.sleep(0.3)  # the listeners subscribe
        kb = await publisher.store.knowledge()
        doc = stored_document(kb.entries[0])
        doc["answer"]["en"] = "Announced."
        await publisher.store.save_draft(parse_topic_file({"topic": kb.entries[0].topic, "entries": [doc]}, "t")[0],
                                         author="sam")
        await publisher.store.publish(author="sam")
        await publisher.reload()
        await publisher.announce()
        for _ in range(100):
            if other.version == 2:
                break
            await asyncio.sleep(0.05)
        assert other.version == 2 and other.kb.entries[0].answer["en"] == "Announced."
    finally:
        for service in services:
            await service.stop()
        await store.close()
