"""serving24: the table of pred_error.py's JSON lines (nothing typed by hand).

    python benchmarks/results/serving_2026-12-08/serving24/summarize.py benchmarks/results/serving_2026-12-08/serving24/*.jsonl

Per (cell, load, sigma): seeds; met requests summed over the seeds for edf, edf-triage, memory-aware (and the
requests); memory-aware - edf and memory-aware - edf-triage in met requests summed and in SLO points (over all the
seeds' requests); seeds where memory-aware is below edf (and the worst, in requests); the same against edf-triage.
"""
import json
import sys
from collections import defaultdict

rows = [json.loads(line) for f in sys.argv[1:] for line in open(f) if line.strip()]
groups = defaultdict(list)
for r in rows:
    groups[(r["cell"], r["load"], r["sigma"])].append(r)
print("| cell | load | sigma | seeds | requests | edf met | edf-triage met | memory-aware met | ma - edf (pts) "
      "| seeds ma < edf (worst) | ma - edf-triage (pts) | seeds ma < edf-triage (worst) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for (cell, load, sigma), rs in sorted(groups.items()):
    rs = sorted((r for r in rs if all(p in r for p in ("edf", "edf-triage", "memory-aware"))), key=lambda r: r["seed"])
    if not rs:
        continue
    n = sum(r["requests"] for r in rs)
    tot = {p: sum(r[p][0] for r in rs) for p in ("edf", "edf-triage", "memory-aware")}

    def vs(other):
        d = [r["memory-aware"][0] - r[other][0] for r in rs]
        below = [x for x in d if x < 0]
        return (f"{sum(d):+d} ({sum(d) / n * 100:+.2f})",
                f"{len(below)}/{len(d)}" + (f" ({min(below):+d})" if below else ""))

    e, t = vs("edf"), vs("edf-triage")
    print(f"| {cell} | {load} | {sigma} | {','.join(str(r['seed']) for r in rs)} | {n:,} | {tot['edf']:,} | "
          f"{tot['edf-triage']:,} | {tot['memory-aware']:,} | {e[0]} | {e[1]} | {t[0]} | {t[1]} |")
diag = sorted({k for r in rows for k in r if k.startswith("memory-aware-")})
if diag:
    print("\n| cell | load | sigma | seeds | " + " | ".join(f"{d} met | {d} - memory-aware | {d} - edf-triage"
                                                         for d in diag) + " |")
    print("|---|---|---|---|" + "---|---|---|" * len(diag))
    for (cell, load, sigma), rs in sorted(groups.items()):
        rs = sorted((r for r in rs if all(d in r for d in diag)), key=lambda r: r["seed"])
        if rs:
            print(f"| {cell} | {load} | {sigma} | {','.join(str(r['seed']) for r in rs)} | " + " | ".join(
                f"{sum(r[d][0] for r in rs):,} | {sum(r[d][0] - r['memory-aware'][0] for r in rs):+d} | "
                f"{sum(r[d][0] - r['edf-triage'][0] for r in rs):+d}" for d in diag) + " |")
cpu = [v[4] for r in rows for k, v in r.items() if isinstance(v, list)]
print(f"\n{len(rows)} lines, {len(cpu)} simulations, CPU s per run {min(cpu)}-{max(cpu)}, total {sum(cpu):.0f}.")
