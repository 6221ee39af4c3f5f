"""Tables for RESULTS.md serving17 from sweep8_before.jsonl / sweep8_after.jsonl (8 GPUs, met per seed).

    python benchmarks/results/serving_2026-12-07/serving17/tables.py"""
import json
from pathlib import Path

here = Path(__file__).parent
rows = {}
for tag in ("before", "after"):
    for line in (here / f"sweep8_{tag}.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[(tag, r["pool"], r["load"], r["seed"], r["policy"])] = r


def met(tag, pool, load, pol):
    return [rows[(tag, pool, load, s, pol)]["met"] for s in range(4)]


for pool in ("fits", "80+24 GB", "48 GB", "24 GB"):
    print(f"\n8 x {pool}: met per seed 0-3 (sum; SLO of the sum)")
    print("| load | requests | edf | edf-triage before -> after | memory-aware before -> after "
          "| after - edf per seed |")
    print("|---|---|---|---|---|---|")
    for load in (0.6, 0.8, 1.0, 1.2):
        n = sum(rows[("after", pool, load, s, "edf")]["requests"] for s in range(4))
        e = met("after", pool, load, "edf")
        tb, ta = met("before", pool, load, "edf-triage"), met("after", pool, load, "edf-triage")
        mb, ma = met("before", pool, load, "memory-aware"), met("after", pool, load, "memory-aware")
        f = lambda v: f"{'/'.join(map(str, v))} ({sum(v)}; {sum(v) / n:.3f})"
        print(f"| {load} | {n} | {f(e)} | {f(tb)} -> {f(ta)} | {f(mb)} -> {f(ma)} | "
              f"{'/'.join(f'{a - b:+d}' for a, b in zip(ma, e))} |")
    print("per class SLO, seed 0, memory-aware after (edf):",
          {load: (rows[("after", pool, load, 0, "memory-aware")]["per_class"],
                  rows[("after", pool, load, 0, "edf")]["per_class"]) for load in (0.6, 0.8)})
