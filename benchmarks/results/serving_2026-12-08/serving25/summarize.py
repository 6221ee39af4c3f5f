"""serving25: seed-sum tables of variants.py's JSON lines (nothing typed by hand).

    python benchmarks/results/serving_2026-12-08/serving25/summarize.py FILE.jsonl [...]

Per (cell, load, sigma): seeds, requests, met summed over the seeds per policy; for every memory-aware variant (any
policy other than edf / edf-triage) also "- edf-triage (seeds below, worst)" and "- edf (seeds below)". Rows of
one (cell, load, seed, sigma) in several files are merged (a later file adds policies).
"""
import json
import sys
from collections import defaultdict

rows = {}
for f in sys.argv[1:]:
    for line in open(f):
        if line.strip():
            r = json.loads(line)
            rows.setdefault((r["cell"], r["load"], r["seed"], r["sigma"]), {}).update(r)
pols = list(dict.fromkeys(k for r in rows.values() for k, v in r.items() if isinstance(v, list)))
groups = defaultdict(list)
for (cell, load, seed, sigma), r in rows.items():
    groups[(cell, load, sigma)].append(r)
for (cell, load, sigma), rs in sorted(groups.items()):
    rs.sort(key=lambda r: r["seed"])
    have = [p for p in pols if all(p in r for r in rs)]
    base = [p for p in ("edf", "edf-triage") if p in have]
    print(f"\n{cell} load {load} sigma {sigma}: seeds {rs[0]['seed']}-{rs[-1]['seed']} ({len(rs)}), "
          f"requests {sum(r['requests'] for r in rs)}")
    for p in have:
        met = sum(r[p][0] for r in rs)
        line = f"  {p:28s} {met:7d}"
        for b in base:
            if p in ("edf", "edf-triage") and b != "edf" or p == b:
                continue
            d = [r[p][0] - r[b][0] for r in rs]
            below = [x for x in d if x < 0]
            line += f" | - {b}: {sum(d):+5d} ({len(below)} below{', worst %+d' % min(below) if below else ''})"
        print(line)
