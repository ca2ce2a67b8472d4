"""Where a server's memory goes, for the soak (`hotline bench soak --probe FILE`): the stand-in server started with
`--memory-probe FILE` appends one JSON line to FILE at every SIGUSR1 the run sends it.

A line says what the process holds, split by who holds it, so that growth can be told apart:
- Python objects: `tracemalloc` (traced since start-up) and the count of live objects by type (gc);
- SQLite's own allocations (`sqlite3_memory_used`: page caches, statements), native, invisible to tracemalloc;
- the C allocator (glibc `mallinfo2`): bytes in use, bytes free but kept in its arenas (fragmentation, the
  high-water mark), bytes in separate mappings;
- threads and asyncio tasks.
With `trace_frames` > 0 a tracemalloc snapshot is also written beside FILE (`FILE.N.snap`), so that two of them can
be compared by line (`compare_snapshots`).

Only for measurement runs: a server never gets `--memory-probe` in production (it costs memory and time).
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import json
import signal
import sys
import threading
import time
import tracemalloc
import types
from collections import Counter
from pathlib import Path
from typing import Any


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        return libc
    except (OSError, AttributeError):  # not glibc (or older than 2.33): the allocator part is left out
        return None


def _sqlite() -> Any:
    """The SQLite library the sqlite3 module uses (the one loaded in this process)."""
    import sqlite3  # noqa: F401  (loads it)

    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if "libsqlite3" in path:
            try:
                lib = ctypes.CDLL(path)
                lib.sqlite3_memory_used.restype = ctypes.c_int64
                lib.sqlite3_memory_highwater.restype = ctypes.c_int64
                return lib
            except OSError:
                return None
    return None  # statically linked into the module: not reachable


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def sample(*, top_types: int = 40, min_count: int = 20) -> dict[str, Any]:
    """One sample. Object counts: every type with at least `min_count` live objects (a top-N list would make types
    near its edge look as if they grew or shrank); frames, coroutines and exceptions: the `top_types // 2` most
    common places."""
    mb = 1024 * 1024
    out: dict[str, Any] = {"at": time.time(), "rss_mb": _status("VmRSS") / 1024, "threads": _status("Threads"),
                           # anonymous memory (heaps, Python's arenas) apart from mapped files (libraries, SQLite's
                           # shared-memory index) and shared memory
                           "rss_anon_mb": _status("RssAnon") / 1024, "rss_file_mb": _status("RssFile") / 1024,
                           "rss_shmem_mb": _status("RssShmem") / 1024,
                           # blocks Python's allocator holds (objects, their buffers up to 512 bytes)
                           "python_blocks": sys.getallocatedblocks()}
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        out["python_traced_mb"] = current / mb
    lib = _sqlite()
    if lib is not None:
        out["sqlite_mb"] = lib.sqlite3_memory_used() / mb
        out["sqlite_highwater_mb"] = lib.sqlite3_memory_highwater(0) / mb
    libc = _libc()
    if libc is not None:
        m = libc.mallinfo2()
        # arena: heap bytes taken from the system (all arenas); uordblks: in use; fordblks: free but kept;
        # hblkhd: bytes in separate mmap'ed blocks (big allocations).
        out["malloc"] = {"arena_mb": m.arena / mb, "in_use_mb": m.uordblks / mb, "free_kept_mb": m.fordblks / mb,
                         "mmapped_mb": m.hblkhd / mb, "mmapped_blocks": m.hblks}
    loop = asyncio._get_running_loop()
    if loop is not None:
        out["tasks"] = len(asyncio.all_tasks(loop))
    # No gc.collect() here: collecting would change what is measured (garbage in cycles waiting for the collector
    # is part of what the process holds); the collector's counters say how far it is behind.
    out["gc_counts"] = list(gc.get_count())
    out["gc_collections"] = [s["collections"] for s in gc.get_stats()]
    objects = gc.get_objects()
    counts = Counter(type(o).__qualname__ for o in objects)
    out["objects"] = sum(counts.values())
    out["types"] = {t: n for t, n in counts.most_common() if n >= min_count}
    # Whose frames, coroutines and exceptions are alive: a growing count names the code that holds on to them.
    frames: Counter[str] = Counter()
    coroutines: Counter[str] = Counter()
    exceptions: Counter[str] = Counter()
    for o in objects:
        if isinstance(o, types.FrameType):
            frames[_where(o.f_code)] += 1
        elif isinstance(o, types.CoroutineType):
            coroutines[_where(o.cr_code) + (" (running)" if o.cr_frame is not None else " (done)")] += 1
        elif isinstance(o, BaseException):
            tb = o.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            exceptions[type(o).__qualname__ + (f" at {_where(tb.tb_frame.f_code)}" if tb is not None else "")] += 1
    del objects
    out["frames"] = dict(frames.most_common(top_types // 2))
    out["coroutines"] = dict(coroutines.most_common(top_types // 2))
    out["exceptions"] = dict(exceptions.most_common(top_types // 2))
    return out


def _where(code: types.CodeType) -> str:
    return f"{Path(code.co_filename).name}:{code.co_firstlineno}:{code.co_name}"


def install(path: Path, *, trace_frames: int = 0) -> None:
    """Answer SIGUSR1 with a sample appended to `path` (and a tracemalloc snapshot with `trace_frames`)."""
    path = Path(path)
    if trace_frames > 0 and not tracemalloc.is_tracing():
        tracemalloc.start(trace_frames)
    counter = {"n": 0}
    lock = threading.Lock()

    def on_signal(_signum: int, _frame: Any) -> None:
        with lock:
            counter["n"] += 1
            record = sample()
            record["n"] = counter["n"]
            if tracemalloc.is_tracing():
                snap = tracemalloc.take_snapshot().filter_traces((
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, "<frozen importlib._bootstrap>")))
                snap.dump(str(path) + f".{counter['n']}.snap")
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")

    signal.signal(signal.SIGUSR1, on_signal)


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def growth(samples: list[dict[str, Any]], first: int = 0, last: int = -1) -> dict[str, Any]:
    """What grew between two samples: the numbers, and the object types whose count grew most."""
    a, b = samples[first], samples[last]
    out: dict[str, Any] = {"rss_mb": b["rss_mb"] - a["rss_mb"], "objects": b["objects"] - a["objects"],
                           **{k: b[k] - a[k] for k in ("rss_anon_mb", "rss_file_mb", "python_blocks") if k in a and k in b},
                           "threads": b["threads"] - a["threads"], "tasks": b.get("tasks", 0) - a.get("tasks", 0)}
    for key in ("python_traced_mb", "sqlite_mb"):
        if key in a and key in b:
            out[key] = b[key] - a[key]
    if "malloc" in a and "malloc" in b:
        out["malloc"] = {k: b["malloc"][k] - a["malloc"][k] for k in a["malloc"]}
    by_type = {t: b["types"].get(t, 0) - a["types"].get(t, 0) for t in set(a["types"]) | set(b["types"])}
    out["types"] = dict(sorted(((t, d) for t, d in by_type.items() if d), key=lambda kv: -abs(kv[1]))[:15])
    for key in ("frames", "coroutines", "exceptions"):
        if key in a and key in b:
            diff = {t: b[key].get(t, 0) - a[key].get(t, 0) for t in set(a[key]) | set(b[key])}
            out[key] = dict(sorted(((t, d) for t, d in diff.items() if d), key=lambda kv: -abs(kv[1]))[:8])
    return out


def compare_snapshots(old: Path, new: Path, *, top: int = 15, key: str = "lineno") -> list[str]:
    a = tracemalloc.Snapshot.load(str(old))
    b = tracemalloc.Snapshot.load(str(new))
    return [str(stat) for stat in b.compare_to(a, key)[:top]]
