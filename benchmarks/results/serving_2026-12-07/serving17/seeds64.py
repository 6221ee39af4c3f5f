"""64 x H100 (80 GB, every model fits), H100 costs: requests that met their deadline per seed and policy.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving17/seeds64.py MIX MINUTES LOAD [policies]
e.g. gfdit:qwen-image 10 0.8 (serving16d's seeds_qwen64.py) or gfdit:wan 60 1.2 (its Wan 60 min runs)."""
import json, sys, time
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs

mix, minutes, load = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
policies = (sys.argv[4] if len(sys.argv) > 4 else "edf,edf-triage,memory-aware").split(",")
costs = shipped_costs("H100")
for seed in (0, 1, 2, 3):
    reqs = generate_workload(mix, gpus=64, minutes=minutes, load=load, seed=seed, costs=costs)
    for pol in policies:
        t = time.process_time()
        s = simulate(reqs, 64, pol, costs, SimConfig(mem_gb=80.0)).summary
        print(json.dumps({"mix": mix, "minutes": minutes, "load": load, "seed": seed, "policy": pol,
                          "requests": s["requests"], "met": round(s["slo_attainment"] * s["requests"]),
                          "reshards": s["reshards"], "p95_s": round(s["latency_ms"]["p95"] / 1e3, 1),
                          "cpu_s": round(time.process_time() - t, 2)}), flush=True)
