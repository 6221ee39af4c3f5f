"""serving22: the cell serving21 left out: Qwen-Image alone (gfdit:qwen-image), 64 x 48 GB, 10 minutes, seed 0, H100
costs: met requests per load for edf, memory-aware with wait=None (before serving22) and memory-aware (wait="expected").

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving22/qwen48.py > .../qwen48.jsonl
"""
import json
import sys

import cfcompile  # noqa: F401

sys.path.insert(0, "benchmarks")
from bench_serving import MEMORY_POOLS  # noqa: E402

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate  # noqa: E402
from cfcompile.elastic.serving.placement import parse_gpu_memory  # noqa: E402
from cfcompile.elastic.serving.planned import shipped_costs  # noqa: E402
from cfcompile.elastic.serving.policies import MemoryAware  # noqa: E402

costs = shipped_costs("H100")
mem = parse_gpu_memory(MEMORY_POOLS["48 GB"].format(half=32), 64)
for seed in (0, 1):
    for load in (0.6, 0.8, 1.0, 1.2):
        reqs = generate_workload("gfdit:qwen-image", gpus=64, minutes=10, load=load, seed=seed, costs=costs)
        row = {"seed": seed, "load": load, "requests": len(reqs)}
        for name, pol in (("edf", "edf"), ("memory-aware wait=None", MemoryAware(wait=None)), ("memory-aware", "memory-aware")):
            s = simulate(reqs, 64, pol, costs, SimConfig(mem_gb=mem)).summary
            row[name] = round(s["slo_attainment"] * s["requests"])
        print(json.dumps(row), flush=True)
