"""serving24: memory-aware against edf and edf-triage when tasks do not run their predicted time
(SimConfig.duration_error = sigma: each task's time x exp(sigma z), z drawn per (duration seed, request, task);
the policies see the predictions). Simulation on the shipped H100 cost table, CPU; not GPU runs.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-08/serving24/pred_error.py CELL LOAD SEEDS SIGMAS [POLICIES] >> OUT.jsonl

CELL: mixed64 (both models, gfdit mix, 64 x H100 80 GB, 60-minute trace, as serving19-22's seed studies) or
qwen8 (gfdit:qwen-image, 8 x H100, 10-minute trace, as bench_serving's 8-GPU runs); mixed64_80+24 / qwen8_80+24:
the same on bench_serving's "80+24 GB" pool (half the GPUs 80 GB, half 24 GB; H100 costs). For each seed the workload is
generated once (workload seed = seed) and every sigma uses duration seed = seed, so at one (seed, sigma) every
policy sees the same requests and the same per-task factors. One JSON line per (cell, load, seed, sigma):
requests, and per policy [met, goodput rps, p95 s, model loads, cpu s]. Policy ``memory-aware-wait-none`` (a
diagnostic) is ``MemoryAware(wait=None)``: memory-aware without serving22's wait rule, the only part of it that
reads ``View.free_at``.
"""
import json
import sys
import time

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import MemoryAware

CELLS = {"mixed64": ("gfdit", 64, 60.0), "qwen8": ("gfdit:qwen-image", 8, 10.0),
         "mixed64_80+24": ("gfdit", 64, 60.0), "qwen8_80+24": ("gfdit:qwen-image", 8, 10.0)}
cell, load = sys.argv[1], float(sys.argv[2])
seeds = [int(s) for s in sys.argv[3].split(",")]
sigmas = [float(s) for s in sys.argv[4].split(",")]
pols = (sys.argv[5] if len(sys.argv) > 5 else "edf,edf-triage,memory-aware").split(",")
mix, gpus, minutes = CELLS[cell]
costs = shipped_costs("H100")
mem = (80.0,) * gpus if "+" not in cell else (80.0,) * (gpus // 2) + (24.0,) * (gpus // 2)  # 80+24 GB: bench_serving's
for seed in seeds:
    reqs = generate_workload(mix, gpus=gpus, minutes=minutes, load=load, seed=seed, costs=costs)
    for sigma in sigmas:
        row = {"cell": cell, "load": load, "seed": seed, "sigma": sigma, "requests": len(reqs)}
        for p in pols:
            t0 = time.process_time()
            pol = MemoryAware(wait=None) if p == "memory-aware-wait-none" else p
            s = simulate(reqs, gpus, pol, costs, SimConfig(mem_gb=mem, duration_error=sigma, duration_seed=seed)).summary
            p95 = s["latency_ms"]["p95"]
            row[p] = [round(s["slo_attainment"] * s["requests"]), s["goodput_rps"],
                      None if p95 is None else round(p95 / 1e3, 1), s["model_loads"], round(time.process_time() - t0, 1)]
        print(json.dumps(row), flush=True)
