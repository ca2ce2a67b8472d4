"""What the hardening runs share: a server in a child process (stand-in or real models) on a free port, its
memory, accounts and console tickets, and a caller that speaks in real time and notes what was answered."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx

from server.caller.bench import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD = "hardening run passphrase 7"
ACCOUNTS = (("fuzz_agent", "agent", "en,zh"), ("fuzz_supervisor", "supervisor", ""))


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    db_url: str
    port: int

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://", 1)

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Every run's callers come from this machine: the per-address limit would refuse the load being measured.
    return {**os.environ, "PYTHONPATH": str(ROOT), "HOTLINE_LOG_LEVEL": "WARNING", "HOTLINE_LOG_JSON": "true",
            "HOTLINE_MAX_CALLS_PER_ADDRESS": "64", "HOTLINE_TWILIO_ALLOW_UNSIGNED": "true",
            "HOTLINE_WARM_ANSWERS": "false", **(extra or {})}


def start_server(db_url: str, log_path: Path, *, real: bool = False, port: int | None = None,
                 env: dict[str, str] | None = None, ready_timeout_s: float = 120.0,
                 extra_args: list[str] | None = None) -> Server:
    port = port or free_port()
    if real:
        cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", db_url]
    else:
        cmd = [sys.executable, "-m", "server.hardening.stubs", "--port", str(port), "--db", db_url]
    cmd += extra_args or []
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=server_env(env), cwd=ROOT)
    log.close()
    server = Server(base=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path, db_url=db_url, port=port)

    def died() -> str | None:
        return None if proc.poll() is None else f"the server exited with {proc.returncode}:\n{server.log_tail()}"

    try:
        wait_ready(server.base, timeout_s=ready_timeout_s, poll_s=0.05, died=died)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: Server, *, kill: bool = False) -> None:
    if server.proc.poll() is None:
        if kill:
            server.proc.kill()
        else:
            server.proc.terminate()
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def logged_errors(server: Server) -> list[str]:
    """The error and traceback lines the server wrote to its log (cut to 300 characters each)."""
    return [line[:300] for line in server.log_path.read_text(errors="replace").splitlines()
            if '"level": "ERROR"' in line or "Traceback" in line]


@contextlib.contextmanager
def temporary_db() -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="hotline-hardening-") as tmp:
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'run.db'}", Path(tmp)


def make_accounts(db_url: str) -> None:
    from server.people.auth import AuthService
    from server.store import Store

    async def go() -> None:
        store = Store(url=db_url)
        await store.migrate()
        auth = AuthService(store=store)
        names = {u.name for u in await auth.users()}
        for name, role, langs in ACCOUNTS:
            if name not in names:
                await auth.add_user(name=name, role=role, password=PASSWORD, languages=langs or None)
        await store.close()

    asyncio.run(go())


async def sign_in(client: httpx.AsyncClient, name: str) -> str:
    r = await client.post("/api/auth/login", json={"name": name, "password": PASSWORD})
    r.raise_for_status()
    return r.json()["token"]


async def ticket(client: httpx.AsyncClient, token: str) -> str:
    r = await client.post("/api/ws-ticket", headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    return r.json()["ticket"]


# ------------------------------------------------------------------ a caller in real time

FRAME = 640  # 20 ms of 16 kHz PCM16
LOUD = (b"\x00\x30\x00\xd0" * (FRAME // 4))  # a square wave well over the stand-in listener's threshold
QUIET = b"\x00\x00" * (FRAME // 2)


@dataclass
class CallResult:
    call_id: str | None = None
    answered: list[str] = field(default_factory=list)  # transcripts of caller turns that got an answer
    close_code: int | None = None
    errors: list[str] = field(default_factory=list)
    ended_state: str | None = None


async def realtime_call(ws_url: str, *, turns: int, result: CallResult, speak_s: float = 0.6,
                        pause_s: float = 0.6) -> CallResult:
    """One native call: `turns` times speak `speak_s` then `pause_s` of silence, in real time, and wait for the
    answer; then hang up. `result` is filled as it goes (a kill mid-call leaves what was answered so far)."""
    import websockets

    last_final: list[str] = []
    async with websockets.connect(ws_url, max_size=None, close_timeout=1) as ws:
        await ws.send(json.dumps({"event": "call.start", "language": "en"}))
        answered = asyncio.Event()

        async def read() -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    continue
                event = json.loads(message)
                kind = event.get("event")
                if kind == "call.started":
                    result.call_id = event["call_id"]
                elif kind == "transcript.final":
                    last_final.append(event["text"])
                elif kind == "answer" and last_final:
                    result.answered.append(last_final[-1])
                    answered.set()
                elif kind == "error":
                    result.errors.append(str(event.get("code")))
                elif kind == "call.ended":
                    result.ended_state = event.get("state")

        reader = asyncio.create_task(read())
        try:
            t0 = time.monotonic()
            sent = 0
            for _ in range(turns):
                answered.clear()
                for frame_audio, seconds in ((LOUD, speak_s), (QUIET, pause_s)):
                    for _ in range(int(seconds / 0.02)):
                        await ws.send(frame_audio)
                        sent += 1
                        await asyncio.sleep(max(0.0, t0 + sent * 0.02 - time.monotonic()))
                waiter = asyncio.ensure_future(answered.wait())
                await asyncio.wait({waiter, reader}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if reader.done():
                    raise ConnectionError("the server closed the call")
                if not answered.is_set():
                    result.errors.append("no_answer")
                # Silence while the answer plays, as a caller listens (keeps the audio clock real).
                for _ in range(int(0.4 / 0.02)):
                    await ws.send(QUIET)
                    sent += 1
                    await asyncio.sleep(max(0.0, t0 + sent * 0.02 - time.monotonic()))
            await ws.send(json.dumps({"event": "hangup"}))
            async with asyncio.timeout(10):
                await reader
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        result.close_code = ws.close_code
    return result
