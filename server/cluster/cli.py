"""The cluster's command: `hotline bench bridge`."""
from __future__ import annotations

from typing import Any


def add_commands(sub: Any, bench_sub: Any) -> None:
    from server.cluster.bench import add_bench

    add_bench(bench_sub)
