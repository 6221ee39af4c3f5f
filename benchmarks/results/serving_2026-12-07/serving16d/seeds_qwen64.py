import sys, json, time
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
costs = shipped_costs("H100")
seeds = [int(x) for x in "0,1,2,3".split(",")]
for seed in seeds:
    reqs = generate_workload("gfdit:qwen-image", gpus=64, minutes=10, load=0.8, seed=seed, costs=costs)
    t=time.process_time()
    s = simulate(reqs, 64, "memory-aware", costs, SimConfig(mem_gb=80.0)).summary
    print(seed, len(reqs), round(s["slo_attainment"]*s["requests"]), {k:v for k,v in s.items() if 'reshard' in k}, round(time.process_time()-t,1), flush=True)
