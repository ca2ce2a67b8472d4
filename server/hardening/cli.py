"""`hotline bench masking | fuzz | durability | soak`: the hardening measurements (docs/security.md)."""
from __future__ import annotations

import argparse
from typing import Any


def _masking(args: argparse.Namespace) -> int:
    from server.people.masking_corpus import baseline_find, evaluate, generate, scaling

    for split in ("dev", "test") if args.split == "both" else (args.split,):
        samples = generate(split, positives=args.positives, negatives=args.negatives)
        r = evaluate(samples)
        b = evaluate(samples, baseline_find)
        print(f"masking [{split}]: recall {r['recall']:.4f} over {r['positives']} spoken-style values, "
              f"false masks {r['false_mask_rate']:.4f} over {r['negatives']} sentences with dates, times, amounts")
        print("  recall by kind: " + ", ".join(f"{k} {v:.3f}" for k, v in r["recall_by_kind"].items()))
        print(f"  baseline (a digit-run / passport / e-mail regex, same sentences): recall {b['recall']:.4f}, "
              f"false masks {b['false_mask_rate']:.4f}; by kind: "
              + ", ".join(f"{k} {v:.3f}" for k, v in b["recall_by_kind"].items()))
        for text in r["missed"][: args.show]:
            print(f"  missed: {text}")
        for text in r["false_masks"][: args.show]:
            print(f"  false mask: {text}")
    times = scaling()
    (n1, t1), (n2, t2) = sorted(times.items())
    print(f"masking time: {n1} findings {t1 * 1000:.1f} ms, {n2} findings {t2 * 1000:.1f} ms "
          f"(x{t2 / t1:.1f} for x{n2 // n1} findings; linear is ~x{n2 // n1}, quadratic ~x{(n2 // n1) ** 2})")
    return 0


def add_commands(sub: Any, bench_sub: Any) -> None:
    m = bench_sub.add_parser("masking", help="masking recall and false masks on the seeded spoken-style corpus")
    m.add_argument("--split", choices=["dev", "test", "both"], default="both")
    m.add_argument("--positives", type=int, default=360)
    m.add_argument("--negatives", type=int, default=240)
    m.add_argument("--show", type=int, default=5, help="missed values and false masks to print")
    m.set_defaults(func=_masking)
    for module in ("server.hardening.fuzz", "server.hardening.durability", "server.hardening.soak"):
        try:
            mod = __import__(module, fromlist=["add_bench"])
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.add_bench(bench_sub)


