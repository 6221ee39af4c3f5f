"""serving25: memory-aware wait-rule variants under prediction error, beside edf and edf-triage (serving24's
pred_error.py with MemoryAware keyword variants).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-08/serving25/variants.py CELL LOAD SEEDS SIGMAS POLICIES >> OUT.jsonl

CELL as serving24 (mixed64, qwen8, mixed64_80+24, qwen8_80+24) plus qwen8_48 (Qwen-Image, 8 x 48 GB, 10 min) and
qwen64_48 (Qwen-Image, 64 x 48 GB, 10 min) and mixed64_24 (both models, 64 x 24 GB, 60 min).
POLICIES: separated by ';'; a policy name (edf, edf-triage, memory-aware = the code's default) or NAME=JSON, MemoryAware(**JSON) reported as NAME, e.g.
'ma-old={"overrun": "now", "wait_margin": 0}'. One JSON line per (cell, load, seed, sigma): requests, and per
policy [met, goodput rps, p95 s, model loads, cpu s]. Workload seed = duration seed = seed.
"""
import json
import sys
import time

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import MemoryAware

CELLS = {"mixed64": ("gfdit", 64, 60.0, None), "qwen8": ("gfdit:qwen-image", 8, 10.0, None),
         "mixed64_80+24": ("gfdit", 64, 60.0, "80+24"), "qwen8_80+24": ("gfdit:qwen-image", 8, 10.0, "80+24"),
         "qwen8_48": ("gfdit:qwen-image", 8, 10.0, 48.0), "qwen64_48": ("gfdit:qwen-image", 64, 10.0, 48.0),
         "mixed64_24": ("gfdit", 64, 60.0, 24.0)}
cell, load = sys.argv[1], float(sys.argv[2])
seeds = [int(s) for s in sys.argv[3].split(",")]
sigmas = [float(s) for s in sys.argv[4].split(",")]
pols = []
for spec in sys.argv[5].split(";"):
    name, _, kw = spec.partition("=")
    pols.append((name, json.loads(kw) if kw else None))
mix, gpus, minutes, pool = CELLS[cell]
costs = shipped_costs("H100")
mem = ((80.0,) * gpus if pool is None else (80.0,) * (gpus // 2) + (24.0,) * (gpus // 2) if pool == "80+24"
       else (pool,) * gpus)
for seed in seeds:
    reqs = generate_workload(mix, gpus=gpus, minutes=minutes, load=load, seed=seed, costs=costs)
    for sigma in sigmas:
        row = {"cell": cell, "load": load, "seed": seed, "sigma": sigma, "requests": len(reqs)}
        for name, kw in pols:
            t0 = time.process_time()
            pol = MemoryAware(**kw) if kw is not None else name
            s = simulate(reqs, gpus, pol, costs, SimConfig(mem_gb=mem, duration_error=sigma, duration_seed=seed)).summary
            p95 = s["latency_ms"]["p95"]
            row[name] = [round(s["slo_attainment"] * s["requests"]), s["goodput_rps"],
                         None if p95 is None else round(p95 / 1e3, 1), s["model_loads"], round(time.process_time() - t0, 1)]
        print(json.dumps(row), flush=True)
