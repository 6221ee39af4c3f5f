"""serving19: serving17's 8-GPU sweep (Qwen-Image, H100 costs, 4 pools x 4 loads x 4 seeds): memory-aware after the
placement change (sweep8_after.jsonl here) against serving17's memory-aware and edf (serving17/sweep8_after.jsonl).

    python benchmarks/results/serving_2026-12-07/serving19/sweep8_compare.py > .../sweep8_compare.md
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
old = [json.loads(x) for x in (HERE.parent / "serving17" / "sweep8_after.jsonl").read_text().splitlines() if x]
new = [json.loads(x) for x in (HERE / "sweep8_after.jsonl").read_text().splitlines() if x]
o = {(r["pool"], r["load"], r["seed"], r["policy"]): r for r in old}
print("| pool | load | edf met per seed (sum; SLO) | memory-aware serving17 | memory-aware now | now - edf per seed (points) |")
print("|---|---|---|---|---|---|")
worst = []
for pool in ("fits", "80+24 GB", "48 GB", "24 GB"):
    for load in (0.6, 0.8, 1.0, 1.2):
        rs = sorted((r for r in new if r["pool"] == pool and r["load"] == load), key=lambda r: r["seed"])
        if not rs:
            continue
        n = sum(r["requests"] for r in rs)
        e = [o[(pool, load, r["seed"], "edf")]["met"] for r in rs]
        b = [o[(pool, load, r["seed"], "memory-aware")]["met"] for r in rs]
        a = [r["met"] for r in rs]
        d = [100 * (x - y) / r["requests"] for x, y, r in zip(a, e, rs)]
        worst += [(x, pool, load, r["seed"]) for x, r in zip(d, rs)]
        f = lambda v: f"{' / '.join(map(str, v))} ({sum(v)}; {sum(v) / n:.3f})"
        print(f"| {pool} | {load} | {f(e)} | {f(b)} | {f(a)} | {' / '.join(f'{x:+.1f}' for x in d)} |")
neg = [w for w in worst if w[0] < 0]
print(f"\nmemory-aware now - edf < 0 on {len(neg)} of {len(worst)} pool / load / seed points: {neg}")
