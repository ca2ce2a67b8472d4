"""`hotline users add NAME --role R [--languages en,zh] [--password-stdin] [--dev]`, `hotline users list`, and
`hotline users disable|enable|reset-password|revoke NAME`: disabling refuses sign-in and revokes every session,
a password reset revokes every session too, revoke ends every session of the account. A running service closes the
consoles of those sessions at its next check (`people.session_check_s`); through the admin routes it does at once.

The only way to make the first account: there is no default user and no default password. The password is read
from stdin (one line, for scripts) or asked twice at the terminal; it never appears on the command line (where
`ps` and shell history would keep it).
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any


async def _with_auth(settings: Any, fn: Any) -> Any:
    from server.people.auth import AuthService
    from server.store import Store

    store = Store(url=settings.db_url)
    try:
        await store.migrate()
        return await fn(AuthService(store=store))
    finally:
        await store.close()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise SystemExit("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("the passwords differ")
    return first


def _add(args: argparse.Namespace) -> int:
    from server.people.auth import AuthError

    settings = args.load_settings()
    if args.db:
        settings = settings.model_copy(update={"db_url": args.db})
    password = _read_password(args)

    async def add(auth: Any) -> Any:
        return await auth.add_user(name=args.name, role=args.role, password=password, languages=args.languages,
                                   dev=args.dev)

    try:
        user = asyncio.run(_with_auth(settings, add))
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    langs = f" languages={user.languages}" if user.languages else ""
    print(f"added {user.name} role={user.role}{langs}{' (dev only)' if user.dev_only else ''}")
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = args.load_settings()
    if args.db:
        settings = settings.model_copy(update={"db_url": args.db})

    async def listing(auth: Any) -> Any:
        return await auth.users()

    users = asyncio.run(_with_auth(settings, listing))
    print(f"{'name':<24} {'role':<11} {'languages':<10} flags")
    for u in users:
        flags = ",".join(f for f, on in (("dev", u.dev_only), ("disabled", u.disabled)) if on)
        print(f"{u.name:<24} {u.role:<11} {u.languages or '-':<10} {flags}")
    return 0


def _manage(args: argparse.Namespace) -> int:
    from server.people.auth import AuthError

    settings = args.load_settings()
    if args.db:
        settings = settings.model_copy(update={"db_url": args.db})
    action = args.users_command
    password = _read_password(args) if action == "reset-password" else ""

    async def run(auth: Any) -> Any:
        if action == "disable":
            return await auth.set_disabled(args.name, True)
        if action == "enable":
            return await auth.set_disabled(args.name, False)
        if action == "reset-password":
            return await auth.reset_password(args.name, password)
        return await auth.revoke(args.name)

    try:
        result = asyncio.run(_with_auth(settings, run))
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    done = {"disable": "disabled (sessions revoked)", "enable": "enabled",
            "reset-password": "password reset (sessions revoked)"}.get(action, f"{result} session(s) revoked")
    print(f"{args.name}: {done}")
    return 0


def add_commands(sub: Any, bench_sub: Any) -> None:
    users = sub.add_parser("users", help="accounts of agents, supervisors and admins")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION")
    add = users_sub.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["agent", "supervisor", "admin"])
    add.add_argument("--languages", help="languages an agent takes calls in: en, zh or en,zh")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.add_argument("--dev", action="store_true",
                     help="development account: any password allowed, signs in only when people.dev_mode is on")
    add.add_argument("--db", help="database URL (default: the service's)")
    add.set_defaults(func=_add)
    lst = users_sub.add_parser("list", help="list accounts")
    lst.add_argument("--db", help="database URL (default: the service's)")
    lst.set_defaults(func=_list)
    for action, text in (("disable", "refuse sign-in and revoke every session"), ("enable", "allow sign-in again"),
                         ("reset-password", "set a new password (asked, or --password-stdin); revokes every session"),
                         ("revoke", "end every session of the account")):
        p = users_sub.add_parser(action, help=text)
        p.add_argument("name")
        if action == "reset-password":
            p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
        p.add_argument("--db", help="database URL (default: the service's)")
        p.set_defaults(func=_manage)
    users.set_defaults(func=lambda args: (users.print_help(), 2)[1])
