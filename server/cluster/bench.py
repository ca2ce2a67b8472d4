"""`hotline bench bridge`: the delay the Redis bus adds to a call's audio when the agent (or a supervisor) is on
another process than the caller, against the same frames delivered inside one process.

The caller's side publishes 20 ms frames in real time through the same tap the live calls use (BusTap); a second
process (this module run as `--receive`) takes them through the same code as a remote call (RemoteLiveCall.receive
-> on_caller_audio) and notes when each arrived. Each frame carries its send time (both processes read the same
machine clock), so the figure is one-way: tap -> Redis -> other process -> the agent's audio callback. In one
process the same tap calls the callback directly; that is the baseline printed beside it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import time
from typing import Any

FRAME_BYTES = 640


async def _receive(url: str, prefix: str, calls: int, frames: int, timeout_s: float) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from server.cluster.bus import Bus
    from server.cluster.live import RemoteLiveCall

    client = aioredis.Redis.from_url(url)
    bus = Bus(redis=client, prefix=prefix, process_id="bench-receiver")
    delays: list[float] = []
    done = asyncio.Event()

    def arrived(pcm: bytes) -> None:
        delays.append((time.time() - struct.unpack("<d", pcm[:8])[0]) * 1000)
        if len(delays) >= calls * frames:
            done.set()

    await bus.start(lambda _data: None)
    for i in range(calls):
        live = RemoteLiveCall(call_id=f"bench{i}", session=None, started_wall=time.time(), started=0.0)
        live.on_caller_audio.append(arrived)
        await bus.subscribe(bus.call_channel(live.call_id), live.receive)
    print("ready", flush=True)
    try:
        await asyncio.wait_for(done.wait(), timeout_s)
    except asyncio.TimeoutError:
        pass
    await bus.stop()
    await client.aclose()
    return {"delays_ms": delays}


async def _send(url: str, prefix: str, calls: int, frames: int) -> None:
    import redis.asyncio as aioredis

    from server.cluster.bus import Bus
    from server.cluster.live import BusTap
    from server.people.live import CHANNEL_CALLER

    client = aioredis.Redis.from_url(url)
    bus = Bus(redis=client, prefix=prefix, process_id="bench-sender")
    await bus.start(lambda _data: None)
    taps = [BusTap(bus, f"bench{i}") for i in range(calls)]
    t0 = time.monotonic()
    for n in range(frames):
        await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))  # paced like a caller: one frame per 20 ms
        for tap in taps:
            tap.put(bytes([CHANNEL_CALLER]) + struct.pack("<d", time.time()) + b"\0" * (FRAME_BYTES - 8))
    await asyncio.sleep(0.5)
    await bus.stop()
    await client.aclose()


def _in_process(calls: int, frames: int) -> list[float]:
    """The same tap in one process: the live registry calls the agent's audio callback directly."""
    from server.people.live import LiveCall

    delays: list[float] = []
    lives = []
    for i in range(calls):
        live = LiveCall(call_id=f"local{i}", session=None, started_wall=time.time(), started=0.0)
        live.on_caller_audio.append(lambda pcm: delays.append((time.time() - struct.unpack("<d", pcm[:8])[0]) * 1000))
        lives.append(live)
    t0 = time.monotonic()
    for n in range(min(frames, 100)):
        time.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))
        for live in lives:
            pcm = struct.pack("<d", time.time()) + b"\0" * (FRAME_BYTES - 8)
            for fn in list(live.on_caller_audio):
                fn(pcm)
    return delays


def run_bench(*, url: str, calls: int, seconds: float, out: Any = None) -> dict[str, Any]:
    from server.people.queue_store import new_process_id
    from server.metrics import percentile

    out = out or sys.stdout
    frames = int(seconds / 0.02)
    prefix = f"hotline-bench-{new_process_id()}:"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "server.cluster.bench", "--receive", "--redis", url, "--prefix", prefix,
         "--calls", str(calls), "--frames", str(frames), "--timeout", str(seconds + 15)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise RuntimeError("the receiving process did not start")
        asyncio.run(_send(url, prefix, calls, frames))
        remote = json.loads(receiver.stdout.read() or "{}").get("delays_ms", [])
    finally:
        receiver.wait(30)
    local = _in_process(calls, frames)

    def stats(xs: list[float]) -> dict[str, float | None]:
        return {"p50_ms": percentile(xs, 50), "p95_ms": percentile(xs, 95), "max_ms": max(xs) if xs else None}

    report = {"calls": calls, "frames_sent": frames * calls, "frames_received": len(remote),
              "one_process": stats(local), "two_processes": stats(remote)}
    p95_local, p95_remote = report["one_process"]["p95_ms"], report["two_processes"]["p95_ms"]
    report["added_p95_ms"] = (p95_remote - p95_local) if p95_remote is not None and p95_local is not None else None
    print(f"bridge audio, {calls} call(s), {seconds:.0f} s of 20 ms frames each, paced in real time", file=out)
    for name in ("one_process", "two_processes"):
        s = report[name]
        print(f"  {name.replace('_', ' '):14s} p50 {s['p50_ms'] or 0:7.2f} ms  p95 {s['p95_ms'] or 0:7.2f} ms  "
              f"max {s['max_ms'] or 0:7.2f} ms", file=out)
    lost = report["frames_sent"] - report["frames_received"]
    added = report["added_p95_ms"]
    print(f"  added by the bridge (p95): {added if added is not None else float('nan'):.2f} ms (target <= 40 ms); "
          f"frames lost: {lost}", file=out)
    return report


def add_bench(bench_sub: Any) -> None:
    b = bench_sub.add_parser("bridge", help="audio delay added by the Redis bus between processes (vs one process)")
    b.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL (default redis://127.0.0.1:6379/0)")
    b.add_argument("--calls", type=int, default=1, help="simultaneous calls bridged (default 1)")
    b.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per call (default 10)")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")

    def run(args: argparse.Namespace) -> int:
        report = run_bench(url=args.redis, calls=args.calls, seconds=args.seconds,
                           out=sys.stderr if args.json else sys.stdout)
        if args.json:
            print(json.dumps(report, indent=2))
        return 0 if report["frames_received"] else 1

    b.set_defaults(func=run)


def _main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--receive", action="store_true")
    p.add_argument("--redis", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()
    print(json.dumps(asyncio.run(_receive(a.redis, a.prefix, a.calls, a.frames, a.timeout))))


if __name__ == "__main__":
    _main()
