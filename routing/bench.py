"""`hotline bench routing`: the router's accuracy on each part of the evaluation set, beside two baselines computed in
the same run, and its decision time on one core.

The evaluation set (routing/eval/, see its README) has a development part that tuning may look at and a held-out
test part that it may not; figures are reported on the test part, the development part beside it. Every accuracy
comes with its 95% Wilson interval. The baselines:

- "always answer, BM25 top topic": plain BM25 over the knowledge base's example questions (the router's tokenizer,
  without its mixed-language glossary, embeddings, pinyin or policy); the route is always `answer`; a question that
  shares no word with the knowledge base gets `out_of_scope`.
- "majority route": the part's most frequent route for every question, with its most frequent topic.

"One core" is enforced, not hoped for: numpy's BLAS and OpenMP runtimes read their thread count once, when they load,
so the benchmark runs in a process started with the thread variables already set to 1 (it starts one itself when
they are not), and it reports the CPU time of the other threads of the process during decisions as the check.

    python -m routing.bench [options]          # the same as `hotline bench routing [options]`
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

import yaml

from routing.cli import add_data_options, load_router, routing_settings
from routing.retrieval_text import main_language, normalize
from routing.stats import percentile, wilson_interval
from routing.topics import HUMAN_AGENT, OUT_OF_SCOPE, ROUTES

EVAL_DIR = Path(__file__).resolve().parent / "eval"
PARTS = {"test": EVAL_DIR / "test.yaml", "dev": EVAL_DIR / "dev.yaml"}  # the order they are printed in
PART_NOTES = {"test": "held out: tuning may not look at it", "dev": "development: tuning may look at it"}
EVAL_LANGUAGES = ("en", "zh", "mixed")
# Every runtime that may start a thread pool when it loads: OpenMP (the embedding engine), and numpy's BLAS builds.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
# Process CPU time above the deciding thread's own by more than this share means another thread worked.
OTHER_THREADS_TOLERANCE = 0.05


# --- the evaluation set ---------------------------------------------------------------------------------------------
def load_eval(path: Path) -> list[dict]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    items = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected 'questions: [...]'")
    for i, q in enumerate(items):
        for key in ("text", "language", "topic", "route"):
            if not isinstance(q, dict) or key not in q:
                raise ValueError(f"{path} questions[{i}]: missing {key!r}")
        if q["language"] not in EVAL_LANGUAGES:
            raise ValueError(f"{path} questions[{i}]: language must be one of {', '.join(EVAL_LANGUAGES)}")
    return items


def expected_language(text: str, label: str) -> str:
    """The language the answer must be in: the label, or for a mixed question its main script."""
    if label in ("en", "zh"):
        return label
    return "zh" if main_language(normalize(text)) == "zh" else "en"


# --- baselines ------------------------------------------------------------------------------------------------------
class Bm25TopicBaseline:
    """The topic of the knowledge-base entry whose example questions share the most BM25 weight with the question."""

    def __init__(self, kb) -> None:
        from routing.retrieval import entry_phrasings
        from routing.retrieval_bm25 import Bm25Index
        from routing.retrieval_text import lexical_tokens

        self._tokens = lexical_tokens
        self._topics = [e.topic for e in kb.entries]
        self._index = Bm25Index(documents=[lexical_tokens(" \n ".join(entry_phrasings(e))) for e in kb.entries])

    def topic(self, text: str) -> str:
        scores, _ = self._index.scores(self._tokens(normalize(text)))
        if not scores:
            return OUT_OF_SCOPE
        best = max(scores.items(), key=lambda kv: (kv[1], -kv[0]))[0]  # ties: the first entry
        return self._topics[best]


def majority(values: Iterable[str], order: Iterable[str] = ()) -> str:
    """The most frequent value; ties go to the earlier one in `order`, then to the first seen."""
    counts = Counter(values)
    rank = {v: i for i, v in enumerate(order)}
    return max(counts, key=lambda v: (counts[v], -rank.get(v, len(rank))))


# --- figures --------------------------------------------------------------------------------------------------------
def accuracy(rows: list[dict], key: str) -> dict:
    """Share of rows where `key` is true, with its 95% Wilson interval."""
    k, n = sum(1 for r in rows if r[key]), len(rows)
    lo, hi = wilson_interval(k, n)
    return {"correct": k, "n": n, "share": k / n if n else float("nan"), "ci95": [lo, hi]}


def figures(rows: list[dict], topic_key: str, route_key: str) -> dict:
    """Topic and route accuracy over all rows and per language of the labels."""
    by_language = defaultdict(list)
    for r in rows:
        by_language[r["language"]].append(r)
    return {
        "topic": accuracy(rows, topic_key),
        "route": accuracy(rows, route_key),
        "per_language": {lang: {"topic": accuracy(by_language[lang], topic_key),
                                "route": accuracy(by_language[lang], route_key)}
                         for lang in EVAL_LANGUAGES if by_language[lang]},
    }


def run_eval(router, items: list[dict], baseline: Bm25TopicBaseline | None = None) -> dict:
    """Decide every question once (fresh dialog each), compare with the labels, and score the baselines."""
    baseline = baseline or Bm25TopicBaseline(router.kb)
    majority_route = majority((q["route"] for q in items), ROUTES)
    majority_topic = majority(q["topic"] for q in items)
    results = []
    for q in items:
        label = q["language"]
        langs = ["en", "zh"] if label == "mixed" else [label]
        # A mixed question is decided with either recogniser label: the answer language must follow the text.
        decisions = [router.decide(q["text"], language=lang, state=router.new_dialog()) for lang in langs]
        d = decisions[0]
        want_lang = expected_language(q["text"], label)
        bm25_topic = baseline.topic(q["text"])
        results.append({
            "text": q["text"], "language": label, "topic": q["topic"], "route": q["route"],
            "got_topic": d.topic, "got_route": d.route, "got_language": [x.language for x in decisions],
            "topic_ok": d.topic == q["topic"], "route_ok": d.route == q["route"],
            "language_ok": all(x.language == want_lang for x in decisions),
            "score": round(d.score, 3), "reason": d.reason,
            "bm25_topic": bm25_topic, "bm25_topic_ok": bm25_topic == q["topic"], "answer_ok": q["route"] == "answer",
            "majority_topic_ok": q["topic"] == majority_topic, "majority_route_ok": q["route"] == majority_route,
        })
    n = len(results)

    def share(rows, key):
        return sum(r[key] for r in rows) / len(rows) if rows else float("nan")

    router_figures = figures(results, "topic_ok", "route_ok")
    per_topic = defaultdict(list)
    for r in results:
        per_topic[r["topic"]].append(r)
    explicit = [r for r in results if r["topic"] == HUMAN_AGENT]
    oos = [r for r in results if r["topic"] == OUT_OF_SCOPE]
    return {
        "questions": n,
        "topic_accuracy": router_figures["topic"]["share"],
        "topic_ci95": router_figures["topic"]["ci95"],
        "route_accuracy": router_figures["route"]["share"],
        "route_ci95": router_figures["route"]["ci95"],
        "language_accuracy": share(results, "language_ok"),
        "per_language": {lang: {"n": v["topic"]["n"], "topic": v["topic"]["share"], "route": v["route"]["share"],
                                "topic_ci95": v["topic"]["ci95"], "route_ci95": v["route"]["ci95"]}
                         for lang, v in router_figures["per_language"].items()},
        "per_topic": {k: {"n": len(v), "topic": share(v, "topic_ok"), "route": share(v, "route_ok")}
                      for k, v in sorted(per_topic.items())},
        "agent_requests_to_agent": share(explicit, "route_ok") if explicit else None,
        # An out-of-scope question answered as if in scope: routed "answer" under an in-scope topic.
        "out_of_scope_answered_in_scope": sum(
            1 for r in oos if r["got_route"] == "answer" and r["got_topic"] not in (OUT_OF_SCOPE, HUMAN_AGENT)),
        "router": router_figures,
        "baselines": {
            "always_answer_bm25": figures(results, "bm25_topic_ok", "answer_ok"),
            "majority_route": {"route_label": majority_route, "topic_label": majority_topic,
                               **figures(results, "majority_topic_ok", "majority_route_ok")},
        },
        "errors": [r for r in results if not (r["topic_ok"] and r["route_ok"] and r["language_ok"])],
    }


# --- time on one core -----------------------------------------------------------------------------------------------
def native_threads() -> int | None:
    """Threads of this process as the kernel sees them (pools started by C libraries included); None off Linux."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def time_decisions(router, items: list[dict], repeat: int) -> dict:
    """Wall time and CPU time of the deciding thread per decision, and the CPU time the rest of the process spent
    meanwhile: with every engine on one thread that is ~0, which is the check that a decision costs one core."""
    wall, cpu = [], []
    process0 = time.process_time()
    for _ in range(max(1, repeat)):
        for q in items:
            lang = q["language"] if q["language"] in ("en", "zh") else "en"
            t0, c0 = time.perf_counter(), time.thread_time()
            router.decide(q["text"], language=lang, state=router.new_dialog())
            cpu.append((time.thread_time() - c0) * 1000)
            wall.append((time.perf_counter() - t0) * 1000)
    process_ms = (time.process_time() - process0) * 1000
    thread_ms = sum(cpu)
    other_ms = max(0.0, process_ms - thread_ms)
    return {"mean_ms": sum(wall) / len(wall), "p50_ms": percentile(wall, 50), "p95_ms": percentile(wall, 95),
            "max_ms": max(wall), "cpu_mean_ms": thread_ms / len(cpu), "cpu_p95_ms": percentile(cpu, 95),
            "decisions": len(wall), "other_threads_cpu_ms": other_ms,
            "one_core": other_ms <= OTHER_THREADS_TOLERANCE * thread_ms + 1.0}


def time_baseline(baseline: "Bm25TopicBaseline", items: list[dict], repeat: int) -> dict:
    """The same figures for the BM25 baseline's decision (its top topic), on the same questions, same thread."""
    wall, cpu = [], []
    for _ in range(max(1, repeat)):
        for q in items:
            t0, c0 = time.perf_counter(), time.thread_time()
            baseline.topic(q["text"])
            cpu.append((time.thread_time() - c0) * 1000)
            wall.append((time.perf_counter() - t0) * 1000)
    return {"mean_ms": sum(wall) / len(wall), "p95_ms": percentile(wall, 95), "cpu_mean_ms": sum(cpu) / len(cpu),
            "cpu_p95_ms": percentile(cpu, 95)}


def thread_settings() -> dict:
    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


def threads_pinned() -> bool:
    return all(os.environ.get(name) == "1" for name in THREAD_VARIABLES)


# --- command line ---------------------------------------------------------------------------------------------------
def add_bench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--part", choices=("all", *PARTS), default="all",
                   help="which part of routing/eval/ (default: all, test first)")
    p.add_argument("--eval", default=None, help="another questions YAML instead of routing/eval/'s parts")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--errors", action="store_true", help="list the questions decided wrongly")
    p.add_argument("--per-topic", action="store_true", help="print the accuracy per topic")
    p.add_argument("--repeat", type=int, default=3, help="timing passes over the questions (default 3)")
    p.add_argument("--no-embeddings", action="store_true", help="lexical + pinyin only (ablation)")
    add_data_options(p)


def bench_argv(args: argparse.Namespace) -> list[str]:
    """The options of `args` as a command line for `python -m routing.bench`."""
    argv = ["--part", args.part, "--repeat", str(args.repeat)]
    for flag, value in (("--eval", args.eval), ("--knowledge-dir", args.knowledge_dir),
                        ("--prompts", args.prompts_path)):
        if value is not None:
            argv += [flag, str(value)]
    for flag, on in (("--json", args.json), ("--errors", args.errors), ("--per-topic", args.per_topic),
                     ("--no-embeddings", args.no_embeddings)):
        if on:
            argv.append(flag)
    return argv


def run_on_one_core(args: argparse.Namespace) -> int:
    """Run the benchmark in a fresh process whose thread variables are 1 from its start (set here, they would come
    too late for the numpy already loaded); its output is passed through."""
    env = dict(os.environ)
    env.update({name: "1" for name in THREAD_VARIABLES})
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-m", "routing.bench", *bench_argv(args)], env=env,
                          capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def cmd_bench(args: argparse.Namespace) -> int:
    if not threads_pinned():
        return run_on_one_core(args)
    if args.eval:
        sets = {Path(args.eval).stem: Path(args.eval)}
    else:
        sets = {name: path for name, path in PARTS.items() if args.part in ("all", name)}
    try:
        items = {name: load_eval(path) for name, path in sets.items()}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: evaluation set: {exc} (the format is described in routing/eval/README.md)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    router = load_router(routing_settings(args))
    if router is None:
        return 1
    load_s = time.perf_counter() - t0
    try:
        router.warm_up()
        baseline = Bm25TopicBaseline(router.kb)
        reports = {name: run_eval(router, qs, baseline) for name, qs in items.items()}
        every = [q for qs in items.values() for q in qs]
        timing = time_decisions(router, every, args.repeat)
        timing["bm25"] = time_baseline(baseline, every, args.repeat)
    finally:
        router.close()
    timing["native_threads"] = native_threads()
    timing["thread_variables"] = thread_settings()
    if args.json:
        print(json.dumps({"sets": {name: {"path": str(sets[name]), **r} for name, r in reports.items()},
                          "load_s": load_s, "entries": len(router.kb.entries), "timing": timing},
                         ensure_ascii=False, indent=2))
        return 0
    print(f"routing benchmark: {len(router.kb.entries)} knowledge-base entries, loaded in {load_s:.2f} s; "
          f"accuracies with their 95% Wilson interval")
    for name, report in reports.items():
        print_report(name, sets[name], report, per_topic=args.per_topic, errors=args.errors)
    print_timing(timing)
    return 0


def _acc(a: dict) -> str:
    lo, hi = a["ci95"]
    return f"{a['share']:6.1%} [{lo:.1%}-{hi:.1%}]"


def _figure_lines(title: str, f: dict) -> list[str]:
    lines = [f"    {title:34s} all    n={f['topic']['n']:3d}  {_acc(f['topic']):22s}  {_acc(f['route'])}"]
    for lang, v in f["per_language"].items():
        lines.append(f"    {'':34s} {lang:6s} n={v['topic']['n']:3d}  {_acc(v['topic']):22s}  {_acc(v['route'])}")
    return lines


def print_report(name: str, path: Path, report: dict, *, per_topic: bool, errors: bool) -> None:
    note = PART_NOTES.get(name, "")
    print(f"\n{name} part: {report['questions']} questions from {path}" + (f" ({note})" if note else ""))
    print(f"    {'':34s} {'':6s} {'':5s}  {'topic':22s}  route")
    base = report["baselines"]
    maj = base["majority_route"]
    for line in (_figure_lines("router", report["router"])
                 + _figure_lines("baseline: always answer, BM25 top", base["always_answer_bm25"])
                 + _figure_lines(f"baseline: majority ({maj['route_label']})", maj)):
        print(line)
    print(f"    (majority baseline's topic: the most frequent, {maj['topic_label']})")
    print(f"    answer language {report['language_accuracy']:.1%}", end="")
    if report["agent_requests_to_agent"] is not None:
        print(f" · requests for a person -> agent {report['agent_requests_to_agent']:.1%}", end="")
    print(f" · out-of-scope answered as in scope {report['out_of_scope_answered_in_scope']}")
    if per_topic:
        print("    per topic:")
        for topic, v in report["per_topic"].items():
            print(f"      {topic:24s} n={v['n']:3d}  topic {v['topic']:.1%}  route {v['route']:.1%}")
    if errors:
        print("    wrong decisions:")
        for r in report["errors"]:
            print(f"      [{r['language']}] {r['text'][:70]!r}: want {r['topic']}/{r['route']}, got "
                  f"{r['got_topic']}/{r['got_route']} lang {r['got_language']} score {r['score']} ({r['reason']})")


def print_timing(t: dict) -> None:
    print(f"\ndecision time over the questions above, wall (1 thread): mean {t['mean_ms']:.1f} ms  "
          f"p50 {t['p50_ms']:.1f}  p95 {t['p95_ms']:.1f}  max {t['max_ms']:.1f}  ({t['decisions']} decisions; percentiles interpolated)")
    print(f"decision time, CPU of the deciding thread: mean {t['cpu_mean_ms']:.1f} ms  p95 {t['cpu_p95_ms']:.1f}"
          f"  (machine load average {os.getloadavg()[0]:.1f})")
    if "bm25" in t:
        b = t["bm25"]
        print(f"baseline (BM25 top topic, same questions, same thread): wall mean {b['mean_ms']:.2f} ms  p95 "
              f"{b['p95_ms']:.2f}; CPU mean {b['cpu_mean_ms']:.2f} ms  p95 {b['cpu_p95_ms']:.2f}")
    pinned = ", ".join(f"{k}={v}" for k, v in t["thread_variables"].items())
    print(f"one core: {'yes' if t['one_core'] else 'NO'} — other threads used {t['other_threads_cpu_ms']:.0f} ms CPU "
          f"during the decisions; {t['native_threads']} native threads; {pinned}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m routing.bench", description=__doc__.splitlines()[0])
    add_bench_options(parser)
    return cmd_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
