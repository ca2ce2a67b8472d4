"""The `hotline` command line.

Each layer registers its own sub-commands (`voice.cli`, `routing.cli`, `server.commands`), so this file only
dispatches; a newcomer finds `hotline say` next to the synthesizer it drives.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that expose `add_commands(subparsers)`; each sub-command sets `func(args) -> int`.
COMMAND_MODULES = ("voice.cli", "voice.tts.cli", "routing.cli", "server.commands", "server.store.cli", "server.caller.cli",
                   "server.cluster.cli", "server.people.users_cli", "server.people.queue_bench", "server.knowledge.cli",
                   "server.hardening.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotline",
        description="Bilingual (English / Mandarin) hotline assistant: voice pipeline, Q&A routing, call service.",
    )
    parser.add_argument("--config", help="settings file (YAML or TOML); environment variables HOTLINE_* override it")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser("bench", help="benchmarks that print figures (asr, routing, call, queue)")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="WHAT")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a layer not yet built must not break the others
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.add_commands(sub, bench_sub)
    return parser


def _load_settings(path: str | None):
    from server.settings import Settings  # validated once here, then passed down

    return Settings.load(path)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    args.load_settings = lambda: _load_settings(args.config)
    from server.settings import SettingsError, async_db_url

    try:
        if getattr(args, "db", None):  # every command's --db: the plain URL forms map to the async drivers
            args.db = async_db_url(args.db)
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except SettingsError as exc:  # bad settings or options: one line that says what to change, no traceback
        print(f"hotline: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
