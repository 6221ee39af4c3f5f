"""serving22 (serving21/seeds_mixed.py; candidates.py adds wait-expected): both models (gfdit mix), 64 x H100 (80 GB), 60-minute trace: met requests per seed and policy.

A control policy, ``edf-rev``, is GF-DiT's EDF best-fit (our ``edf``) with one change that no policy should care
about: free GPUs that tie on edf's placement key go highest rank first instead of lowest. It measures how far a
schedule moves per seed when nothing but the GPU numbering changes (GPU g starts holding model g % 2, so the
mirror is not exact).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving21/seeds_mixed.py LOAD SEEDS POLICIES >> OUT.jsonl
    e.g. ... seeds_mixed.py 1.2 0,1,2,3 edf,edf-rev,edf-triage,memory-aware,memory-aware-notriage

One JSON line per (load, seed): requests, and per policy [met, model loads, reshards, goodput rps, p95 s, cpu s].
An optional fourth argument names a memory pool of bench_serving (``"80+24 GB"``, ``"48 GB"``, ``"24 GB"``; default
every GPU 80 GB); the line then carries ``pool``.
"""
import json
import sys
import time

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import EDFBestFit

sys.path.insert(0, "benchmarks/results/serving_2026-12-07/serving22")
import candidates  # noqa: E402


class EDFRev(EDFBestFit):
    """edf with the rank tie-break of its placement reversed (control for schedule sensitivity)."""

    name = "edf-rev"

    def _rest_key(self, task, view, taken):
        return lambda g: (taken.get(g, 0), -g)


costs = shipped_costs("H100")
load = float(sys.argv[1])
seeds = [int(s) for s in sys.argv[2].split(",")]
pols = sys.argv[3].split(",")
pool = sys.argv[4] if len(sys.argv) > 4 else None
if pool is None:
    mem = (80.0,) * 64
else:
    sys.path.insert(0, "benchmarks")
    from bench_serving import MEMORY_POOLS
    from cfcompile.elastic.serving.placement import parse_gpu_memory

    mem = parse_gpu_memory(MEMORY_POOLS[pool].format(half=32), 64)
for seed in seeds:
    reqs = generate_workload("gfdit", gpus=64, minutes=60, load=load, seed=seed, costs=costs)
    row = {"seed": seed, "load": load, "requests": len(reqs), **({} if pool is None else {"pool": pool})}
    for p in pols:
        t0 = time.process_time()
        s = simulate(reqs, 64, EDFRev() if p == "edf-rev" else candidates.make(p) if p.startswith("wait-") else p, costs, SimConfig(mem_gb=mem)).summary
        p95 = s["latency_ms"]["p95"]
        row[p] = [round(s["slo_attainment"] * s["requests"]), s["model_loads"], s["reshards"], s["goodput_rps"],
                  None if p95 is None else round(p95 / 1e3, 1), round(time.process_time() - t0, 1)]
    print(json.dumps(row), flush=True)
