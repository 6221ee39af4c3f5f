import sys, json
sys.path.insert(0, "benchmarks")
from bench_serving import MEMORY_POOLS
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.placement import parse_gpu_memory
from cfcompile.elastic.serving.planned import shipped_costs
costs = shipped_costs("H100")
gpus = 8
tot = {}
for pool in ("80+24 GB", "48 GB"):
    mem = parse_gpu_memory(MEMORY_POOLS[pool].format(half=gpus // 2), gpus)
    for load in (0.6, 0.8, 1.0, 1.2):
        row = []
        for seed in (0, 1, 2, 3):
            reqs = generate_workload("gfdit:qwen-image", gpus=gpus, minutes=10, load=load, seed=seed, costs=costs)
            s = simulate(reqs, gpus, "memory-aware", costs, SimConfig(mem_gb=mem)).summary
            row.append(round(s["slo_attainment"] * s["requests"]))
        print(pool, load, row, sum(row), flush=True)
