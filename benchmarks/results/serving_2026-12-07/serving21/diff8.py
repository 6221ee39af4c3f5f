"""serving21: on one 8-GPU Qwen-Image point of serving17's sweep, the requests memory-aware meets with the wait rule
off and not on (and the reverse), with each one's DiT degrees and how late it finished.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving21/diff8.py POOL LOAD SEED [WAIT_A WAIT_B]
"""
import sys

import cfcompile  # noqa: F401
sys.path.insert(0, "benchmarks")
from bench_serving import MEMORY_POOLS  # noqa: E402
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate  # noqa: E402
from cfcompile.elastic.serving.placement import parse_gpu_memory  # noqa: E402
from cfcompile.elastic.serving.planned import shipped_costs  # noqa: E402
from cfcompile.elastic.serving.policies import MemoryAware  # noqa: E402

pool, load, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
wa, wb = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("none", "all")
costs = shipped_costs("H100")
mem = 80.0 if pool == "fits" else parse_gpu_memory(MEMORY_POOLS[pool].format(half=4), 8)
reqs = generate_workload("gfdit:qwen-image", gpus=8, minutes=10, load=load, seed=seed, costs=costs)
res = {}
for w in (wa, wb):
    res[w] = simulate(reqs, 8, MemoryAware(wait=None if w == "none" else w), costs, SimConfig(mem_gb=mem))
met = {w: {r.id for r in x.requests if x.finish_s[r.id] <= r.deadline_s + 1e-9} for w, x in res.items()}
print(pool, load, seed, {w: len(m) for w, m in met.items()})
for a, b in ((wa, wb), (wb, wa)):
    only = sorted(met[a] - met[b])
    print(f"met with wait={a} only: {len(only)}")
    for rid in only[:12]:
        r = next(x for x in reqs if x.id == rid)
        line = [f"{rid} {r.klass} arr {r.arrival_s:.1f} dl {r.deadline_s:.1f}"]
        for w in (a, b):
            recs = [x for x in res[w].records if x.task.request == rid and x.task.kind == "denoise"]
            line.append(f"{w}: degrees {[len(x.task.group) for x in recs]} start {recs[0].start_s:.1f} "
                        f"fin {res[w].finish_s[rid]:.1f} ({res[w].finish_s[rid] - r.deadline_s:+.2f})")
            line.append(f"     waits {[round(x.start_s - y.end_s, 2) for x, y in zip(recs[1:], recs)]}")
        print("   " + "\n   ".join(line))
