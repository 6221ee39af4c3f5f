"""serving18: both models (gfdit), 64 x H100 (80 GB), 60 minutes, load 1.2: met requests per seed for edf,
edf-triage, memory-aware, memory-aware-notriage (the one cell where memory-aware was below edf at seed 0).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving18/seeds_mixed.py > .../seeds_mixed.jsonl
"""
import json
import sys

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs

costs = shipped_costs("H100")
load = float(sys.argv[1]) if len(sys.argv) > 1 else 1.2
for seed in (0, 1, 2, 3):
    reqs = generate_workload("gfdit", gpus=64, minutes=60, load=load, seed=seed, costs=costs)
    row = {"seed": seed, "load": load, "requests": len(reqs)}
    for p in ("edf", "edf-triage", "memory-aware", "memory-aware-notriage"):
        s = simulate(reqs, 64, p, costs, SimConfig(mem_gb=(80.0,) * 64)).summary
        row[p] = round(s["slo_attainment"] * s["requests"])
    print(json.dumps(row), flush=True)
