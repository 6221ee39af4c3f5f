"""serving19: the RESULTS.md tables from this folder's jsonl files (nothing typed by hand).

    python benchmarks/results/serving_2026-12-07/serving19/tables.py > benchmarks/results/serving_2026-12-07/serving19/tables.md
"""
import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows(name):
    return [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()]


print("### memory-aware (and controls) minus edf, met requests per seed: gfdit, 64 x H100 (80 GB), 60 min, load 1.2\n")
r12 = rows("seeds_mixed_load1.2.jsonl")
print("| policy | " + " | ".join(f"s{r['seed']}" for r in r12) + " | sum | mean ± sd | seeds < 0 | worst (points) |")
print("|---" * (len(r12) + 5) + "|")
print("| edf (met) | " + " | ".join(f"{r['edf'][0]:,}" for r in r12) + f" | {sum(r['edf'][0] for r in r12):,} | | | |")
for p in ("edf-rev", "edf-triage", "memory-aware", "memory-aware-notriage"):
    d = [r[p][0] - r["edf"][0] for r in r12]
    worst = min(100 * x / r["requests"] for x, r in zip(d, r12))
    print(f"| {p} | " + " | ".join(f"{x:+d}" for x in d)
          + f" | {sum(d):+d} | {statistics.mean(d):+.1f} ± {statistics.stdev(d):.1f} | {sum(x < 0 for x in d)} | {worst:+.2f} |")

print("\n### gfdit, 64 x H100 (80 GB), 60 min, seeds 0-3: met per seed (sum; SLO of the sum); memory-aware rows before "
      "(05ea4b3) and after (56e6557) the placement change; under it, goodput over the best static (before)\n")
grid = rows("seeds_mixed_grid.jsonl")
stat12 = {r["seed"]: r for r in rows("seeds_mixed_load1.2_static.jsonl")}
for r in r12:
    if r["seed"] in stat12:
        grid.append({**r, **{k: v for k, v in stat12[r["seed"]].items() if isinstance(v, list)}})
loads = sorted({r["load"] for r in grid})
pols = ("static-1", "static-2", "static-4", "static-8", "srtf", "edf", "edf-rev", "edf-triage", "memory-aware",
        "memory-aware-notriage")
print("| policy | " + " | ".join(f"load {x}" for x in loads) + " |")
print("|---" * (len(loads) + 1) + "|")
by = {x: sorted((r for r in grid if r["load"] == x and r["seed"] <= 3), key=lambda r: r["seed"]) for x in loads}
for p in pols:
    cells = []
    for x in loads:
        rs = by[x]
        met = [r[p][0] for r in rs]
        n = sum(r["requests"] for r in rs)
        cells.append(f"{' / '.join(f'{m:,}' for m in met)} ({sum(met):,}; {sum(met) / n:.3f})")
    print(f"| {p} | " + " | ".join(cells) + " |")
_ga = {(r["load"], r["seed"]): r for r in rows("seeds_mixed_grid_after.jsonl") + rows("seeds_mixed_load1.2_after.jsonl")}
for p in ("memory-aware", "memory-aware-notriage"):
    cells = []
    for x in loads:
        met = [_ga[(x, r["seed"])][p][0] for r in by[x]]
        n = sum(r["requests"] for r in by[x])
        cells.append(f"{' / '.join(f'{m:,}' for m in met)} ({sum(met):,}; {sum(met) / n:.3f})")
    print(f"| {p} after (56e6557) | " + " | ".join(cells) + " |")
print("| requests | " + " | ".join(" / ".join(f"{r['requests']:,}" for r in by[x]) for x in loads) + " |")
print()
for x in loads:
    rs = by[x]
    parts = []
    for r in rs:
        best = max(("static-1", "static-2", "static-4", "static-8"), key=lambda p: r[p][3])
        g = r[best][3]
        ceil = r["requests"] / (r["edf"][3] and r["edf"][0] / r["edf"][3]) / g if r["edf"][0] else float("nan")
        parts.append(f"s{r['seed']}: best {best}, ceiling {ceil:.2f}x, edf {r['edf'][3] / g:.2f}x, edf-triage "
                     f"{r['edf-triage'][3] / g:.2f}x, memory-aware {r['memory-aware'][3] / g:.2f}x; memory-aware - edf "
                     f"{100 * (r['memory-aware'][0] - r['edf'][0]) / r['requests']:+.1f} pts")
    print(f"- load {x}: " + "; ".join(parts))

# ---- after the placement change (memory-aware ranks GPUs holding another waiting request's state after the others)
print("\n### memory-aware - edf, met requests per seed, before (05ea4b3) -> after: gfdit, 64 x H100 (80 GB), 60 min\n")
after12 = {r["seed"]: r for r in rows("seeds_mixed_load1.2_after.jsonl")}
gafter = {(r["load"], r["seed"]): r for r in rows("seeds_mixed_grid_after.jsonl")}
gbefore = {(r["load"], r["seed"]): r for r in rows("seeds_mixed_grid.jsonl")}
if (HERE / "seeds_mixed_grid_before_s45.jsonl").exists():
    for r in rows("seeds_mixed_grid_before_s45.jsonl"):
        gbefore[(r["load"], r["seed"])] = {**gafter[(r["load"], r["seed"])], **{k: v for k, v in r.items() if isinstance(v, list)}}
for r in r12:
    gbefore[(1.2, r["seed"])] = r
    gafter[(1.2, r["seed"])] = {**r, **{k: v for k, v in after12[r["seed"]].items() if isinstance(v, list)}}
print("| load | policy | " + " | ".join(f"s{s}" for s in range(16)) + " | sum | seeds < 0 |")
print("|---" * 20 + "|")
for load in (0.6, 0.8, 1.0, 1.2):
    seeds = [s for s in range(16) if (load, s) in gafter and (load, s) in gbefore]
    for p in ("memory-aware", "memory-aware-notriage", "edf-triage"):
        cells, tot_b, tot_a, neg_b, neg_a = [], 0, 0, 0, 0
        for s in range(16):
            if s not in seeds:
                cells.append("")
                continue
            b, a = gbefore[(load, s)], gafter[(load, s)]
            db, da = b[p][0] - b["edf"][0], a[p][0] - a["edf"][0]
            tot_b, tot_a, neg_b, neg_a = tot_b + db, tot_a + da, neg_b + (db < 0), neg_a + (da < 0)
            cells.append(f"{da:+d}" if p == "edf-triage" else f"{db:+d} → {da:+d}")
        sums = f"{tot_a:+d}" if p == "edf-triage" else f"{tot_b:+d} → {tot_a:+d}"
        negs = f"{neg_a}" if p == "edf-triage" else f"{neg_b} → {neg_a}"
        print(f"| {load} | {p} | " + " | ".join(cells) + f" | {sums} | {negs} |")

# ---- both models on the memory pools, seeds 0-3, after 56e6557
print("\n### gfdit, 64 x 80+24 GB and 64 x 24 GB (H100 costs), 60 min, seeds 0-3, after 56e6557: met per seed (SLO of the sum); "
      "memory-aware - edf in SLO points per seed\n")
pr = rows("seeds_pools_mixed.jsonl")
print("| pool | load | edf | edf-triage | memory-aware | memory-aware - edf (points) |")
print("|---|---|---|---|---|---|")
for pool in ("80+24 GB", "24 GB"):
    for load in (0.6, 0.8, 1.0, 1.2):
        rs = sorted((r for r in pr if r["pool"] == pool and r["load"] == load), key=lambda r: r["seed"])
        n = sum(r["requests"] for r in rs)
        f = lambda p: f"{' / '.join(f'{r[p][0]:,}' for r in rs)} ({sum(r[p][0] for r in rs) / n:.3f})"
        d = " / ".join(f"{100 * (r['memory-aware'][0] - r['edf'][0]) / r['requests']:+.1f}" for r in rs)
        print(f"| {pool} | {load} | {f('edf')} | {f('edf-triage')} | {f('memory-aware')} | {d} |")
