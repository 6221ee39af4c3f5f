"""serving25: serving17's 8-GPU sweep (sweep8.py, sigma 0, 64 points) with the new default against edf (serving17's
sweep8_after.jsonl; edf's code unchanged since) and the old rule (serving22's sweep8_wait-expected.jsonl).

    python benchmarks/results/serving_2026-12-08/serving25/sweep8_compare.py
"""
import json
from collections import defaultdict
from pathlib import Path

R = Path(__file__).parent
B = R.parents[1] / "results"
load = lambda p, pol: {(r["pool"], r["load"], r["seed"]): r["met"] for r in map(json.loads, open(p)) if r["policy"] == pol}
edf = load(R.parent.parent / "serving_2026-12-07/serving17/sweep8_after.jsonl", "edf")
old = load(R.parent.parent / "serving_2026-12-07/serving22/sweep8_wait-expected.jsonl", "memory-aware")
new = load(R / "sweep8_newdefault.jsonl", "memory-aware")
print("| pool | load | edf (seeds 0-3) | old | new | new points < edf | new != old (up / down) |")
print("|---|---|---|---|---|---|---|")
sums = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
for k in sorted(new):
    s = sums[k[:2]]
    s[0] += edf[k]; s[1] += old[k]; s[2] += new[k]; s[3] += new[k] < edf[k]; s[4] += new[k] > old[k]; s[5] += new[k] < old[k]
for (pool, ld), s in sums.items():
    print(f"| {pool} | {ld} | {s[0]:,} | {s[1]:,} | {s[2]:,} | {s[3]} | {s[4]} / {s[5]} |")
below = [(k, new[k], edf[k]) for k in sorted(new) if new[k] < edf[k]]
print(f"\npoints below edf: {len(below)} of {len(new)} {below}")
