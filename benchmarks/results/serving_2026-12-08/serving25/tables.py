"""serving25: the seed-sum table of RESULTS.md (nothing typed by hand).

    python benchmarks/results/serving_2026-12-08/serving25/tables.py > benchmarks/results/serving_2026-12-08/serving25/tables.md

memory-aware old = serving22's rule (wait_margin 0, overrun "now": serving24's "memory-aware" column or
serving25's "ma-old"); new = wait_margin 1.0, overrun "wake" ("wake-m1.0", the default since serving25). edf /
edf-triage / old on mixed64 and the 80+24 GB pools come from serving24's files (their code is unchanged).
"""
import json
from collections import defaultdict
from pathlib import Path

R = Path(__file__).parent
S = R.parent / "serving24"
FILES = [S / "mixed64.jsonl", S / "mixed64_s8-15.jsonl", S / "qwen8_80+24.jsonl", S / "mixed64_80+24.jsonl",
         R / "qwen8_candidates.jsonl", R / "mixed64_candidates.jsonl", R / "qwen8_80+24_new.jsonl",
         R / "mixed64_80+24_new.jsonl", R / "qwen8_48.jsonl", R / "qwen64_48.jsonl"]
NAMES = {"cell": {"qwen8": "Qwen-Image, 8 x H100", "mixed64": "both models, 64 x H100",
                  "qwen8_80+24": "Qwen-Image, 8 x 80+24 GB", "mixed64_80+24": "both models, 64 x 80+24 GB",
                  "qwen8_48": "Qwen-Image, 8 x 48 GB", "qwen64_48": "Qwen-Image, 64 x 48 GB"}}
rows = {}
for f in FILES:
    for line in open(f):
        if line.strip():
            r = json.loads(line)
            if "memory-aware" in r and "ma-old" not in r:
                r["ma-old"] = r.pop("memory-aware")
            rows.setdefault((r["cell"], r["load"], r["seed"], r["sigma"]), {}).update(r)
groups = defaultdict(list)
for k, r in rows.items():
    if all(p in r for p in ("edf", "edf-triage", "ma-old", "wake-m1.0")):
        groups[k[0], k[1], k[3]].append(r)


def vs(rs, p, b):
    d = [r[p][0] - r[b][0] for r in rs]
    below = [x for x in d if x < 0]
    return f"{sum(d):+d} ({len(below)}{', %+d' % min(below) if below else ''})"


print("| cell | load | sigma | seeds | requests | edf | edf-triage | ma old | ma new | old - edf-triage (seeds below, "
      "worst) | new - edf-triage (seeds below, worst) | new - edf (seeds below) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
order = list(NAMES["cell"])
for (cell, load, sigma), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1], kv[0][2])):
    rs.sort(key=lambda r: r["seed"])
    seeds = [r["seed"] for r in rs]
    sd = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
    tot = {p: sum(r[p][0] for r in rs) for p in ("edf", "edf-triage", "ma-old", "wake-m1.0")}
    print(f"| {NAMES['cell'][cell]} | {load} | {sigma} | {sd} | {sum(r['requests'] for r in rs):,} | {tot['edf']:,} | "
          f"{tot['edf-triage']:,} | {tot['ma-old']:,} | **{tot['wake-m1.0']:,}** | {vs(rs, 'ma-old', 'edf-triage')} | "
          f"**{vs(rs, 'wake-m1.0', 'edf-triage')}** | {vs(rs, 'wake-m1.0', 'edf')} |")
