"""routing/ works on text: it must not import voice/ or server/ (dependencies point server -> routing only)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROUTING = Path(__file__).resolve().parent.parent / "routing"


def test_no_import_of_voice_or_server_in_the_source():
    for path in ROUTING.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("voice", "server"), f"{path.name} imports {name}"


def test_loading_the_router_loads_neither_layer():
    code = (
        "import sys, routing.router, routing.cli, routing.llm, routing.progress;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('voice', 'server')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROUTING.parent)


def test_embedding_engine_leaves_the_process_thread_settings_alone():
    code = (
        "import os; os.environ.pop('OMP_NUM_THREADS', None);"
        "from routing.retrieval_embed import E5Embedder; e = E5Embedder(threads=1);"
        "assert 'OMP_NUM_THREADS' not in os.environ; assert e.embed(['hi']).shape == (1, e.dim)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROUTING.parent)
