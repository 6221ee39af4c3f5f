"""serving21: serving17/sweep8.py with memory-aware(wait=WAIT) (WAIT: none, all, chunk) as the policy. 8 GPUs, Qwen-Image (gfdit mix), H100 costs: requests that met their deadline per pool / load / seed / policy.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving21/sweep8_wait.py POOLS WAIT > out.jsonl
(the "before" rows: the same with PYTHONPATH at a checkout of 127d4f3, run from the repository root)
pools: comma list of bench_serving MEMORY_POOLS names plus "fits" (80 GB each); default all four."""
import json, sys, time
import cfcompile  # first: bench_serving puts its own checkout first on sys.path (a "before" run uses PYTHONPATH's)
sys.path.insert(0, "benchmarks")
from bench_serving import MEMORY_POOLS
print("cfcompile from", cfcompile.__file__, file=sys.stderr)
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.placement import parse_gpu_memory
from cfcompile.elastic.serving.planned import shipped_costs

costs = shipped_costs("H100")
gpus = 8
pools = (sys.argv[1] if len(sys.argv) > 1 else "fits,80+24 GB,48 GB,24 GB").split(",")
from cfcompile.elastic.serving.policies import MemoryAware
wait = sys.argv[2]
policies = ["wait-" + wait]
for pool in pools:
    mem = 80.0 if pool == "fits" else parse_gpu_memory(MEMORY_POOLS[pool].format(half=gpus // 2), gpus)
    for load in (0.6, 0.8, 1.0, 1.2):
        for seed in (0, 1, 2, 3):
            reqs = generate_workload("gfdit:qwen-image", gpus=gpus, minutes=10, load=load, seed=seed, costs=costs)
            for pol in policies:
                t = time.process_time()
                s = simulate(reqs, gpus, MemoryAware(wait=None if wait == "none" else wait), costs, SimConfig(mem_gb=mem)).summary
                print(json.dumps({"pool": pool, "load": load, "seed": seed, "policy": pol, "requests": s["requests"],
                                  "met": round(s["slo_attainment"] * s["requests"]),
                                  "slo": round(s["slo_attainment"], 4), "p95_s": round(s["latency_ms"]["p95"] / 1e3, 1),
                                  "per_class": {k: round(v["slo_attainment"], 3) for k, v in s["per_class"].items()},
                                  "cpu_s": round(time.process_time() - t, 2)}), flush=True)
