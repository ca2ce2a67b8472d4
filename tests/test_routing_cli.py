"""`hotline ask` and `hotline bench routing` through the real command-line entry point."""
from __future__ import annotations

import json

from routing_helpers import FIXTURES
from server.cli import main

DATA = ["--knowledge-dir", str(FIXTURES / "knowledge"), "--prompts", str(FIXTURES / "prompts.yaml")]


def test_ask_json(tmp_path, capsys):
    assert main(["ask", "工作需可要什么材料", "--json", *DATA]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"route", "topic", "language", "answer", "score"} <= set(out)
    assert (out["route"], out["topic"], out["language"]) == ("answer", "work_permit_apply", "zh")
    # Without --language the script of the question decides.
    assert main(["ask", "I want to talk to a real person", "--json", *DATA]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["route"], out["topic"], out["language"]) == ("agent", "human_agent", "en")
    assert main(["ask", "こんにちは", "--language", "other:ja", *DATA]) == 0
    assert capsys.readouterr().out.startswith("agent · human_agent")


def test_ask_reports_a_broken_kb(tmp_path, capsys):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "x.yaml").write_text("topic: nonsense\nentries: []\n", encoding="utf-8")
    code = main(["ask", "hello", "--knowledge-dir", str(tmp_path / "kb"), "--prompts", str(FIXTURES / "prompts.yaml")])
    assert code == 1 and "unknown topic 'nonsense'" in capsys.readouterr().err


def test_bench_on_a_small_labelled_set(tmp_path, capsys):
    questions = tmp_path / "q.yaml"
    questions.write_text(
        "questions:\n"
        "  - {text: 'What documents do I need for a work permit?', language: en, topic: work_permit_apply, route: answer}\n"
        "  - {text: '转人工', language: zh, topic: human_agent, route: agent}\n"
        "  - {text: '我的work permit怎么延期', language: mixed, topic: work_permit_extend, route: answer}\n"
        "  - {text: 'What is the weather tomorrow?', language: en, topic: out_of_scope, route: answer}\n",
        encoding="utf-8",
    )
    assert main(["bench", "routing", "--eval", str(questions), "--json", "--repeat", "1", *DATA]) == 0
    out = json.loads(capsys.readouterr().out)
    report = out["sets"]["q"]
    assert report["questions"] == 4
    assert report["topic_accuracy"] == 1.0 and report["route_accuracy"] == 1.0
    assert report["language_accuracy"] == 1.0 and report["agent_requests_to_agent"] == 1.0
    assert report["out_of_scope_answered_in_scope"] == 0
    assert set(report["per_language"]) == {"en", "zh", "mixed"}
    assert out["timing"]["mean_ms"] > 0 and out["timing"]["one_core"]


def test_bench_refuses_a_bad_evaluation_set_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("questions:\n  - {text: 'hi', language: fr, topic: hotline_info, route: clarify}\n", encoding="utf-8")
    assert main(["bench", "routing", "--eval", str(bad), *DATA]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: evaluation set:") and "language must be one of en, zh, mixed" in err
    assert len(err.splitlines()) == 1
