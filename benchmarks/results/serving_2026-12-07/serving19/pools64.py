"""serving19: memory-aware after the placement change on serving18's 64-GPU memory-pool cells (seed 0, H100 costs),
against serving18's memory-aware and edf on the same cells (its results.json; edf's code is unchanged).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving19/pools64.py MIX MINUTES POOL LOADS > OUT.jsonl
    e.g. ... pools64.py gfdit:qwen-image 10 "80+24 GB" 0.6,0.8,1.0,1.2
"""
import json
import sys
import time
from pathlib import Path

import cfcompile  # noqa: F401  (first: bench_serving puts its own checkout on sys.path)

sys.path.insert(0, "benchmarks")
from bench_serving import MEMORY_POOLS  # noqa: E402

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate  # noqa: E402
from cfcompile.elastic.serving.placement import parse_gpu_memory  # noqa: E402
from cfcompile.elastic.serving.planned import shipped_costs  # noqa: E402

R18 = Path("benchmarks/results/serving_2026-12-07/serving18")
mix, minutes, pool = sys.argv[1], float(sys.argv[2]), sys.argv[3]
loads = [float(x) for x in sys.argv[4].split(",")]
gpus = 64
before = {}
for f in R18.glob("*/results.json"):
    for e in json.loads(f.read_text()):
        if e["gpus"] == gpus and e["mix"] == mix and e["pool"] == pool and e["profile"] == "H100":
            before.setdefault((e["load"], e["summary"]["policy"]), e["summary"])
costs = shipped_costs("H100")
mem = parse_gpu_memory(MEMORY_POOLS[pool].format(half=gpus // 2), gpus)
for load in loads:
    reqs = generate_workload(mix, gpus=gpus, minutes=minutes, load=load, seed=0, costs=costs)
    t0 = time.process_time()
    s = simulate(reqs, gpus, "memory-aware", costs, SimConfig(mem_gb=mem)).summary
    row = {"mix": mix, "minutes": minutes, "pool": pool, "load": load, "requests": len(reqs),
           "memory-aware": round(s["slo_attainment"], 4),
           "per_class": {k: round(v["slo_attainment"], 3) for k, v in s["per_class"].items()},
           "cpu_s": round(time.process_time() - t0, 1)}
    for p in ("memory-aware", "edf"):
        b = before.get((load, p))
        row[f"serving18 {p}"] = None if b is None else round(b["slo_attainment"], 4)
    if row["serving18 edf"] is not None:
        row["memory-aware - edf pts"] = round(100 * (row["memory-aware"] - row["serving18 edf"]), 1)
    print(json.dumps(row), flush=True)
