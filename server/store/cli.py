"""`hotline applications import FILE`: work-permit applications into the main store (the configured database)."""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def _import(args: argparse.Namespace) -> int:
    from routing.progress import ApplicationFileError, read_applications_file
    from server.settings import Settings
    from server.store.applications import count_applications, upsert_applications
    from server.store.db import Store

    try:
        applications = read_applications_file(Path(args.file))
    except ApplicationFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    settings = Settings.load(getattr(args, "config", None), **({"db_url": args.db} if args.db else {}))

    async def run() -> tuple[int, int]:
        store = Store(url=settings.db_url)
        try:
            await store.migrate()
            n = await upsert_applications(store, applications)
            return n, await count_applications(store)
        finally:
            await store.close()

    try:
        n, total = asyncio.run(run())
    except OSError as exc:  # database unreachable: say so, import nothing
        print(f"error: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    print(f"imported {n} applications into the store ({total} in the store)")
    return 0


def add_commands(sub: Any, bench_sub: Any) -> None:
    apps = sub.add_parser("applications", help="work-permit applications in the main store")
    apps_sub = apps.add_subparsers(dest="applications_command", metavar="ACTION")
    imp = apps_sub.add_parser("import", help="import (insert or update) applications from a YAML file")
    imp.add_argument("file")
    imp.add_argument("--db", help="database URL (default: the configured one, HOTLINE_DB_URL)")
    imp.set_defaults(func=_import)
    apps.set_defaults(func=lambda args: (apps.print_help(), 2)[1])
