"""`hotline ask`, `hotline bench routing` (routing/bench.py): the routing layer's commands (`hotline applications
import` is the server's: it writes to the main store, server/store/cli.py)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from routing.retrieval_text import main_language, normalize
from routing.settings import RoutingSettings


def routing_settings(args: argparse.Namespace) -> RoutingSettings:
    overrides = {}
    for name in ("knowledge_dir", "prompts_path"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = Path(value)
    if getattr(args, "no_embeddings", False):
        overrides["use_embeddings"] = False
    return RoutingSettings(**overrides)


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--knowledge-dir", dest="knowledge_dir", help="folder of knowledge YAML files")
    p.add_argument("--prompts", dest="prompts_path", help="prompts YAML file")


def add_commands(sub, bench_sub) -> None:
    ask = sub.add_parser("ask", help="route one question: answer, clarify or agent, and the answer text")
    ask.add_argument("question")
    ask.add_argument("--language", default=None,
                     help="en | zh | other:<code> (default: from the question's script)")
    ask.add_argument("--json", action="store_true", help="print the decision as JSON")
    add_data_options(ask)
    ask.set_defaults(func=cmd_ask)

    from routing.bench import add_bench_options, cmd_bench

    bench = bench_sub.add_parser("routing", help="accuracy on the evaluation set's test and development parts, "
                                 "beside baselines, and decision time on one core")
    add_bench_options(bench)
    bench.set_defaults(func=cmd_bench)



def load_router(settings: RoutingSettings):
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
    router = load_router(routing_settings(args))
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
