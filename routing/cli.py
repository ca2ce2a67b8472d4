"""`hotline ask`, `hotline bench routing`: the routing layer's commands (`applications import` is the server's: it
writes to the main store)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

from routing.retrieval_text import main_language, normalize
from routing.settings import RoutingSettings


def default_eval_path() -> Path:
    return Path(__file__).resolve().parent / "eval" / "questions.yaml"


def _settings(args: argparse.Namespace) -> RoutingSettings:
    overrides = {}
    for name in ("knowledge_dir", "prompts_path"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = Path(value)
    if getattr(args, "no_embeddings", False):
        overrides["use_embeddings"] = False
    return RoutingSettings(**overrides)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--knowledge-dir", dest="knowledge_dir", help="folder of knowledge YAML files")
    p.add_argument("--prompts", dest="prompts_path", help="prompts YAML file")


def add_commands(sub, bench_sub) -> None:
    ask = sub.add_parser("ask", help="route one question: answer, clarify or agent, and the answer text")
    ask.add_argument("question")
    ask.add_argument("--language", default=None,
                     help="en | zh | other:<code> (default: from the question's script)")
    ask.add_argument("--json", action="store_true", help="print the decision as JSON")
    _add_data_options(ask)
    ask.set_defaults(func=cmd_ask)

    bench = bench_sub.add_parser("routing", help="accuracy and decision time on the labelled evaluation set")
    bench.add_argument("--eval", default=None, help="questions YAML (default: routing/eval/questions.yaml)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument("--errors", action="store_true", help="list the questions decided wrongly")
    bench.add_argument("--repeat", type=int, default=3, help="timing passes over the set (default 3)")
    bench.add_argument("--no-embeddings", action="store_true", help="lexical + pinyin only (ablation)")
    _add_data_options(bench)
    bench.set_defaults(func=cmd_bench)



def _load_router(settings: RoutingSettings):
    from routing.knowledge import KnowledgeError
    from routing.router import Router

    try:
        return Router.load(settings)
    except KnowledgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_ask(args: argparse.Namespace) -> int:
    language = args.language
    if language is None:
        script = main_language(normalize(args.question))
        language = script if script in ("en", "zh") else ("other:und" if script == "other" else "en")
    router = _load_router(_settings(args))
    if router is None:
        return 1
    decision = router.decide(args.question, language=language)
    if args.json:
        print(json.dumps(decision.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(f"{decision.route} · {decision.topic} · {decision.entry_id or '-'} · {decision.language} · "
              f"score {decision.score:.2f} · margin {decision.margin:.2f} · {decision.reason}")
        print(decision.answer)
    return 0


# --- bench ----------------------------------------------------------------------------------------------------------
def expected_language(text: str, label: str) -> str:
    """The language the answer must be in: the label, or for a mixed question its main script."""
    if label in ("en", "zh"):
        return label
    return "zh" if main_language(normalize(text)) == "zh" else "en"


def load_eval(path: Path) -> list[dict]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    items = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected 'questions: [...]'")
    for i, q in enumerate(items):
        for key in ("text", "language", "topic", "route"):
            if key not in q:
                raise ValueError(f"{path} questions[{i}]: missing {key!r}")
    return items


def run_eval(router, items: list[dict]) -> dict:
    """Decide every question once (fresh dialog each) and compare with the labels."""
    from routing.topics import HUMAN_AGENT, OUT_OF_SCOPE

    results = []
    for q in items:
        label = q["language"]
        langs = ["en", "zh"] if label == "mixed" else [label]
        # A mixed question is decided with either recogniser label: the answer language must follow the text.
        decisions = [router.decide(q["text"], language=lang, state=router.new_dialog()) for lang in langs]
        d = decisions[0]
        want_lang = expected_language(q["text"], label)
        results.append({
            "text": q["text"], "language": label, "topic": q["topic"], "route": q["route"],
            "got_topic": d.topic, "got_route": d.route, "got_language": [x.language for x in decisions],
            "topic_ok": d.topic == q["topic"], "route_ok": d.route == q["route"],
            "language_ok": all(x.language == want_lang for x in decisions),
            "score": round(d.score, 3), "reason": d.reason,
        })
    n = len(results)

    def acc(rows, key):
        return sum(r[key] for r in rows) / len(rows) if rows else float("nan")

    per_language = defaultdict(list)
    per_topic = defaultdict(list)
    for r in results:
        per_language[r["language"]].append(r)
        per_topic[r["topic"]].append(r)
    explicit = [r for r in results if r["topic"] == HUMAN_AGENT]
    oos = [r for r in results if r["topic"] == OUT_OF_SCOPE]
    return {
        "questions": n,
        "topic_accuracy": acc(results, "topic_ok"),
        "route_accuracy": acc(results, "route_ok"),
        "language_accuracy": acc(results, "language_ok"),
        "per_language": {k: {"n": len(v), "topic": acc(v, "topic_ok"), "route": acc(v, "route_ok")}
                         for k, v in sorted(per_language.items())},
        "per_topic": {k: {"n": len(v), "topic": acc(v, "topic_ok"), "route": acc(v, "route_ok")}
                      for k, v in sorted(per_topic.items())},
        "agent_requests_to_agent": acc(explicit, "route_ok") if explicit else None,
        # An out-of-scope question answered as if in scope: routed "answer" under an in-scope topic.
        "out_of_scope_answered_in_scope": sum(
            1 for r in oos if r["got_route"] == "answer" and r["got_topic"] not in (OUT_OF_SCOPE, HUMAN_AGENT)),
        "errors": [r for r in results if not (r["topic_ok"] and r["route_ok"] and r["language_ok"])],
    }


def time_decisions(router, items: list[dict], repeat: int) -> dict:
    """Wall time and CPU time of this thread per decision. With one engine thread, the CPU time is what a decision
    costs one core; the wall time also counts waiting for a core on a busy machine."""
    wall, cpu = [], []
    for _ in range(max(1, repeat)):
        for q in items:
            lang = q["language"] if q["language"] in ("en", "zh") else "en"
            t0, c0 = time.perf_counter(), time.thread_time()
            router.decide(q["text"], language=lang, state=router.new_dialog())
            cpu.append((time.thread_time() - c0) * 1000)
            wall.append((time.perf_counter() - t0) * 1000)
    wall.sort()
    cpu.sort()

    def pct(samples, p):
        return samples[min(len(samples) - 1, int(p / 100 * len(samples)))]

    return {"mean_ms": sum(wall) / len(wall), "p50_ms": pct(wall, 50), "p95_ms": pct(wall, 95), "max_ms": wall[-1],
            "cpu_mean_ms": sum(cpu) / len(cpu), "cpu_p95_ms": pct(cpu, 95), "decisions": len(wall)}


def cmd_bench(args: argparse.Namespace) -> int:
    # The target is per core: numpy's BLAS on one thread too (the embedding engine is, by RoutingSettings).
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    path = Path(args.eval) if args.eval else default_eval_path()
    try:
        items = load_eval(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: evaluation set: {exc}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    router = _load_router(_settings(args))
    if router is None:
        return 1
    load_s = time.perf_counter() - t0
    router.warm_up()
    report = run_eval(router, items)
    report["load_s"] = load_s
    report["timing"] = time_decisions(router, items, args.repeat)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"routing benchmark: {report['questions']} questions from {path}  (KB loaded in {load_s:.2f} s)")
    print(f"  top-1 topic accuracy   {report['topic_accuracy']:.1%}")
    print(f"  route accuracy         {report['route_accuracy']:.1%}")
    print(f"  answer language        {report['language_accuracy']:.1%}")
    if report["agent_requests_to_agent"] is not None:
        print(f"  requests for a person -> agent  {report['agent_requests_to_agent']:.1%}")
    print(f"  out-of-scope answered as in scope  {report['out_of_scope_answered_in_scope']}")
    print("  per language:")
    for lang, v in report["per_language"].items():
        print(f"    {lang:6s} n={v['n']:3d}  topic {v['topic']:.1%}  route {v['route']:.1%}")
    print("  per topic:")
    for topic, v in report["per_topic"].items():
        print(f"    {topic:24s} n={v['n']:3d}  topic {v['topic']:.1%}  route {v['route']:.1%}")
    t = report["timing"]
    print(f"  decision time, wall (1 thread): mean {t['mean_ms']:.1f} ms  p50 {t['p50_ms']:.1f}  p95 {t['p95_ms']:.1f}"
          f"  max {t['max_ms']:.1f}  ({t['decisions']} decisions)")
    print(f"  decision time, CPU of one core: mean {t['cpu_mean_ms']:.1f} ms  p95 {t['cpu_p95_ms']:.1f}"
          f"  (machine load average {os.getloadavg()[0]:.1f})")
    if args.errors:
        print("  wrong decisions:")
        for r in report["errors"]:
            print(f"    [{r['language']}] {r['text'][:70]!r}: want {r['topic']}/{r['route']}, got "
                  f"{r['got_topic']}/{r['got_route']} lang {r['got_language']} score {r['score']} ({r['reason']})")
    return 0
