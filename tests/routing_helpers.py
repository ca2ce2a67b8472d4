"""Shared builders for the routing tests (fixture KB, settings in a temporary folder)."""
from __future__ import annotations

from pathlib import Path

from routing.settings import RoutingSettings

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "routing"
REPO = Path(__file__).resolve().parent.parent


def fixture_settings(tmp_path: Path, **overrides) -> RoutingSettings:
    values = dict(
        knowledge_dir=FIXTURES / "knowledge",
        prompts_path=FIXTURES / "prompts.yaml",
        applications_path=FIXTURES / "applications.yaml",
        cache_dir=tmp_path / "cache",
    )
    values.update(overrides)
    return RoutingSettings(**values)


def real_settings(tmp_path: Path, **overrides) -> RoutingSettings:
    """The shipped KB, prompts and demo applications (looked up in memory), with the shared embedding cache."""
    values = dict(cache_dir=REPO / "var" / "cache" / "routing")
    values.update(overrides)
    return RoutingSettings(**values)
