"""`hotline knowledge export DIR|FILE` and `hotline knowledge import DIR|FILE`: the store's knowledge base as YAML
in the format of routing/knowledge/ (one `<topic>.yaml` per topic in a folder, or every topic in one file), so that
a knowledge base can be reviewed in version control and loaded back.

An import is validated as the files are at start-up (routing.knowledge.parse_knowledge) before anything is written;
it publishes at once (`--draft`: leave the changes as drafts for the console), and the running services pick the
new version up within their poll interval. Every import is in the audit log.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import Any

import yaml

from routing.knowledge import KnowledgeError, knowledge_files, parse_knowledge, read_knowledge_files


def _settings(args: argparse.Namespace) -> Any:
    settings = args.load_settings()
    return settings.model_copy(update={"db_url": args.db}) if args.db else settings


async def _with_store(settings: Any, fn: Any) -> Any:
    from server.knowledge.store import KnowledgeStore
    from server.store import Store

    store = Store(url=settings.db_url)
    try:
        await store.migrate()
        knowledge = KnowledgeStore(store)
        if await knowledge.is_empty():  # a fresh install: the store starts from the YAML files, as the service does
            from routing.knowledge import load_knowledge

            await knowledge.seed(load_knowledge(settings.routing.knowledge_dir))
        return await fn(store, knowledge)
    finally:
        await store.close()


def write_export(kb: Any, target: Path) -> list[Path]:
    """One file (target ends in .yaml/.yml: a list of topic mappings) or a folder of topic files."""
    files = knowledge_files(kb.entries)
    if target.suffix in (".yaml", ".yml"):
        target.parent.mkdir(parents=True, exist_ok=True)
        topics = [yaml.safe_load(text) for _, text in files]
        target.write_text(yaml.safe_dump(topics, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files:
        (target / name).write_text(text, encoding="utf-8")
        written.append(target / name)
    return written


def _export(args: argparse.Namespace) -> int:
    async def go(_store: Any, knowledge: Any) -> Any:
        return await knowledge.knowledge(drafts=args.drafts), await knowledge.version()

    kb, version = asyncio.run(_with_store(_settings(args), go))
    written = write_export(kb, Path(args.target))
    stale = sorted(p.name for p in Path(args.target).glob("*.yaml") if p not in written) if Path(args.target).is_dir() else []
    print(f"exported {len(kb.entries)} entries (version {version}{', with drafts' if args.drafts else ''}) "
          f"to {len(written)} file(s) in {args.target}")
    if stale:
        print(f"note: other YAML files in that folder were left as they are: {', '.join(stale)}", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from server.people.auth import AuthService, Principal

    try:
        kb = parse_knowledge(read_knowledge_files(Path(args.source)))
    except KnowledgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    author = args.author or f"cli:{getpass.getuser()}"

    async def go(store: Any, knowledge: Any) -> Any:
        version, changed = await knowledge.import_knowledge(kb, author=author, publish=not args.draft)
        who = Principal(user_id=0, name=author[:64], role="admin", languages=())
        await AuthService(store=store).audit(who, "knowledge_import", detail={
            "version": version, "entries": changed, "published": not args.draft, "source": Path(args.source).name})
        return version, changed

    version, changed = asyncio.run(_with_store(_settings(args), go))
    if not changed:
        print(f"imported {len(kb.entries)} entries: nothing changed")
    elif args.draft:
        print(f"imported {len(kb.entries)} entries: {len(changed)} changed, saved as drafts (publish them in the console)")
    else:
        print(f"imported {len(kb.entries)} entries: {len(changed)} changed, published as version {version}")
    return 0


def add_commands(sub: Any, bench_sub: Any) -> None:
    knowledge = sub.add_parser("knowledge", help="export or import the knowledge base (YAML, as routing/knowledge/)")
    ksub = knowledge.add_subparsers(dest="knowledge_command", metavar="WHAT")
    export = ksub.add_parser("export", help="write the published knowledge base as YAML (a folder, or one .yaml file)")
    export.add_argument("target", help="a folder (one <topic>.yaml each) or a file ending in .yaml")
    export.add_argument("--drafts", action="store_true", help="include unpublished drafts")
    export.add_argument("--db", help="database URL (default: the service's)")
    export.set_defaults(func=_export)
    imp = ksub.add_parser("import", help="load a knowledge base from YAML into the store and publish it")
    imp.add_argument("source", help="a folder of topic files or one .yaml file")
    imp.add_argument("--draft", action="store_true", help="save the changes as drafts instead of publishing them")
    imp.add_argument("--author", help="name recorded in the history and the audit log (default cli:<login>)")
    imp.add_argument("--db", help="database URL (default: the service's)")
    imp.set_defaults(func=_import)
    knowledge.set_defaults(func=lambda args: (knowledge.print_help(), 2)[1])


__all__ = ["add_commands", "write_export"]
