"""serving19: when do edf's and memory-aware's schedules first differ (gfdit, 64 x H100, 60 min, load 1.2)?
The first task placed on a different group or at a different time, and how many of the first 1,000 records agree.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving19/divergence.py SEEDS > OUT.txt
"""
import sys

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs

costs = shipped_costs("H100")
for seed in [int(s) for s in sys.argv[1].split(",")]:
    reqs = generate_workload("gfdit", gpus=64, minutes=60, load=1.2, seed=seed, costs=costs)
    recs = {}
    for p in ("edf", "memory-aware"):
        res = simulate(reqs, 64, p, costs, SimConfig(mem_gb=(80.0,) * 64))
        recs[p] = [(r.task.id, r.task.group, round(r.start_s, 9)) for r in res.records]
    a, b = recs["edf"], recs["memory-aware"]
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), None)
    print(f"seed {seed}: {len(a)} / {len(b)} records; first difference at record {i}: edf {a[i]} vs memory-aware {b[i]}"
          if i is not None else f"seed {seed}: identical")
