"""serving21: is memory-aware's Wan M loss below edf on 64 x H100 (both models, load 1.2) serving20's mechanism?

Per policy and (model, class): met / requests, and among the misses how many had a *certain-miss start*: a DiT
chunk started at a degree d at which the request's remaining work (that chunk and the rest, all at d, model resident)
ends past the deadline, while the same work at the widest degree would still have met it (waiting for, or being
given, a wider group could still meet the deadline). Also the same count among met requests (started at a degree
that misses, then widened later and met), and how late the misses finish (median s).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving21/diag_certain_miss.py SEED [LOAD] [POLICIES] [POOL]
"""
import collections
import statistics
import sys

sys.path.insert(0, "benchmarks")
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate, make_policy
from cfcompile.elastic.serving.planned import shipped_costs

seed = int(sys.argv[1])
load = float(sys.argv[2]) if len(sys.argv) > 2 else 1.2
pols = sys.argv[3].split(",") if len(sys.argv) > 3 else ["edf", "memory-aware"]
pool = sys.argv[4] if len(sys.argv) > 4 else None
costs = shipped_costs("H100")
if pool is None:
    mem = (80.0,) * 64
else:
    from bench_serving import MEMORY_POOLS
    from cfcompile.elastic.serving.placement import parse_gpu_memory
    mem = parse_gpu_memory(MEMORY_POOLS[pool].format(half=32), 64)
reqs = generate_workload("gfdit", gpus=64, minutes=60, load=load, seed=seed, costs=costs)


def policy(p):
    if ":" in p:
        return make_policy(p)
    if p.startswith("wait-"):
        sys.path.insert(0, "benchmarks/results/serving_2026-12-07/serving21")
        import candidates
        return candidates.make(p)
    return p


for p in pols:
    res = simulate(reqs, 64, policy(p), costs, SimConfig(mem_gb=mem))
    by = collections.defaultdict(list)
    for rec in res.records:
        if rec.task.kind != "reshard":
            by[rec.task.request].append(rec)
    stat = collections.defaultdict(collections.Counter)
    late = collections.defaultdict(list)
    for r in res.requests:
        m = costs.model(r.model)
        recs = by[r.id]
        widest = max(m.degrees)
        cm = False
        for i, rec in enumerate(recs):
            if not rec.task.parallel or rec.task.kind != "denoise":
                continue
            d = len(rec.task.group)
            rest = recs[i:]
            at_d = sum(m.task_ms(r, x.task, d) for x in rest) / 1e3
            at_w = sum(m.task_ms(r, x.task, widest) for x in rest) / 1e3
            if rec.start_s + at_d > r.deadline_s and rec.start_s + at_w <= r.deadline_s:
                cm = True
                break
        ok = res.finish_s[r.id] <= r.deadline_s + 1e-9
        k = (r.model[:4], r.klass)
        stat[k]["n"] += 1
        stat[k]["met"] += ok
        stat[k]["miss, certain-miss start"] += (not ok) and cm
        stat[k]["met, certain-miss start"] += ok and cm
        if not ok:
            late[k].append(res.finish_s[r.id] - r.deadline_s)
    tot = sum(c["met"] for c in stat.values())
    print(f"seed {seed} load {load} {pool or '80 GB'} {p}: met {tot}/{len(reqs)}")
    for k in sorted(stat):
        c = stat[k]
        if c["n"] == c["met"] and not c["met, certain-miss start"]:
            continue
        print(f"   {k[0]}/{k[1]}: met {c['met']}/{c['n']}, misses with a certain-miss start "
              f"{c['miss, certain-miss start']}/{c['n'] - c['met']}, met after one {c['met, certain-miss start']}, "
              f"misses late by median {statistics.median(late[k]) if late[k] else 0:.0f} s")
