"""The people tables on SQLite and PostgreSQL: the audit log refuses UPDATE/DELETE in the database itself, search
finds Chinese and English words (no word spaces needed, LIKE wildcards taken literally), filters and the dashboard
count what they should, transcripts come back masked for review."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from server.people import history
from server.people.models import AgentTurn, AuditEntry, QueueOutcome
from server.store import Store
from server.store.models import Call, Turn


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = Store(url=url)
    await s.migrate()
    async with s.engine.begin() as c:  # PostgreSQL's database is shared by the module's tests: start clean
        for table in ("agent_turns", "queue_outcomes", "turns", "call_events", "calls"):
            await c.execute(text(f"DELETE FROM {table}"))
    yield s
    await s.close()


NOW = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)


async def seed(store: Store) -> None:
    calls = [
        # id, language, turns (speaker, text, route, topic, reason), outcome (outcome, wait, agent) | None, day offset
        ("a" * 32, "zh", [("caller", "我想问工作许可怎么办理", None, None, None),
                          ("bot", "请用人单位在网上申请。", "answer", "work_permit_apply", "bm25")], None, 0),
        ("b" * 32, "zh", [("caller", "我要转人工，电话13812345678", None, None, None),
                          ("bot", "正在为您转接人工服务。", "agent", "human_agent", "explicit_agent_request")],
         ("answered", 12.0, "mei"), 0),
        ("c" * 32, "en", [("caller", "How long does a Work Permit take? 100% sure?", None, None, None),
                          ("bot", "About ten working days.", "answer", "work_permit_processing_time", "bm25")], None, -1),
        ("d" * 32, "en", [("caller", "Let me talk to a person", None, None, None),
                          ("bot", "Transferring you.", "agent", "human_agent", "explicit_agent_request")],
         ("abandoned", 40.0, None), -1),
    ]
    async with store.sessions.begin() as s:
        for cid, lang, _, _, day in calls:
            at = NOW + dt.timedelta(days=day)
            s.add(Call(id=cid, protocol="native", state="completed", reason="hangup", started_at=at, ended_at=at, language=lang))
    async with store.sessions.begin() as s:
        for cid, lang, turns, outcome, day in calls:
            at = NOW + dt.timedelta(days=day)
            for i, (speaker, words, route, topic, reason) in enumerate(turns, 1):
                s.add(Turn(call_id=cid, seq=i, speaker=speaker, kind="utterance" if speaker == "caller" else "answer",
                           text=words, language=lang, mixed=False, interrupted=False, route=route, topic=topic,
                           decision_reason=reason, created_at=at + dt.timedelta(seconds=i)))
            if outcome:
                s.add(QueueOutcome(call_id=cid, queue_language=lang, topic="human_agent", outcome=outcome[0],
                                   wait_s=outcome[1], agent_name=outcome[2], at=at))
        s.add(AgentTurn(call_id="b" * 32, agent_name="mei", kind="typed", text="您好，我是小美", language="zh",
                        created_at=NOW + dt.timedelta(seconds=5)))


async def test_audit_log_refuses_update_and_delete(store):
    async with store.sessions.begin() as s:
        s.add(AuditEntry(at=NOW, user_name="sam", role="supervisor", action="read_transcript", call_id="x"))
    for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError) as info:
            async with store.engine.begin() as c:
                await c.execute(text(statement))
        assert "append-only" in str(info.value)
    async with store.engine.connect() as c:
        assert (await c.execute(text("SELECT count(*) FROM audit_log"))).scalar_one() >= 1


async def ids(store: Store, **kw) -> list[str]:
    _, items = await history.search_calls(store, history.CallFilter(**kw))
    return sorted(i["call_id"][0] for i in items)


async def test_search_and_filters(store):
    await seed(store)
    assert await ids(store, q="工作许可") == ["a"]  # a Chinese word inside a sentence, no spaces
    assert await ids(store, q="人工") == ["b"]  # caller and bot turns
    assert await ids(store, q="小美") == ["b"]  # the agent's typed reply
    assert await ids(store, q="work permit") == ["c"]  # case-insensitive
    assert await ids(store, q="100%") == ["c"] and await ids(store, q="%") == ["c"]  # LIKE wildcards are literal
    assert await ids(store, q="_") == []
    assert await ids(store, language="en") == ["c", "d"]
    assert await ids(store, route="agent") == ["b", "d"]
    assert await ids(store, topic="work_permit_apply") == ["a"]
    assert await ids(store, state="abandoned") == ["d"]
    assert await ids(store, agent="mei") == ["b"]
    assert await ids(store, date_from=NOW.date(), date_to=NOW.date()) == ["a", "b"]
    assert await ids(store, q="人工", agent="mei", language="zh") == ["b"]


async def test_transcript_masked_for_review_and_whole_for_the_agent(store):
    await seed(store)
    masked = await history.call_transcript(store, "b" * 32, masked=True)
    whole = await history.call_transcript(store, "b" * 32, masked=False)
    assert "13812345678" not in str(masked) and "[PHONE]" in str(masked)
    assert "13812345678" in str(whole)
    assert [t["speaker"] for t in whole["turns"]] == ["caller", "bot", "agent"]
    times = [t["at_s"] for t in whole["turns"]]
    assert times == sorted(times)
    rows = await history.export_rows(store, history.CallFilter(q="人工"))
    assert [r["call_id"][0] for r in rows] == ["b"] and "13812345678" not in str(rows)


async def test_dashboard_figures(store):
    await seed(store)
    d = await history.dashboard(store, days=7, today=NOW.date())
    assert d["calls"] == 4 and d["escalations"] == 2
    assert d["bot_only_share"] == 0.5
    assert d["escalation_reasons"] == {"explicit_agent_request": 2}
    assert d["abandoned"] == 1
    assert d["wait_avg_s"] == 26.0 and 12.0 <= d["wait_p95_s"] <= 40.0
    assert d["by_language"] == {"zh": 2, "en": 2}
    assert sum(day["calls"] for day in d["per_day"]) == 4 and len(d["per_day"]) == 7
    today = next(x for x in d["per_day"] if x["day"] == NOW.date().isoformat())
    assert (today["calls"], today["bot_only"], today["escalated"]) == (2, 1, 1)


async def test_search_matches_the_masked_text_only(store):
    """A masked phone number cannot be recovered digit by digit through searches (only what a supervisor sees
    matches), and rows stored before the masked column existed are filled by the migration."""
    await seed(store)
    for probe in ("13812345678", "1381234", "138", "5678", "8"):
        assert await ids(store, q=probe) == [], probe
    assert await ids(store, q="[phone]") == ["b"]  # what the supervisor sees
    assert await ids(store, q="电话") == ["b"]


def test_migration_fills_masked_text_of_older_rows(tmp_path):
    import sqlite3

    from alembic import command
    from alembic.config import Config

    from server.store.db import MIGRATIONS_DIR

    db = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{db}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["db_url"] = url
    command.upgrade(cfg, "0002")
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO calls (id, protocol, state, started_at) VALUES ('x', 'native', 'completed', '2026-01-01')")
        c.execute("INSERT INTO turns (call_id, seq, speaker, kind, text, language, language_code, mixed, interrupted,"
                  " created_at) VALUES ('x', 1, 'caller', 'utterance', 'call 13812345678', 'en', 'en', 0, 0, '2026-01-01')")
    command.upgrade(cfg, "head")
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT text_masked FROM turns").fetchone()[0] == "call [PHONE]"
