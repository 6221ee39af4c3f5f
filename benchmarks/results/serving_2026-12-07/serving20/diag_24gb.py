"""serving20: where memory-aware (and edf) lose, against the bound, with both models on 64 x 24 GB (60 min, H100).

Per policy: met per (model, class) against the requests feasible alone (oracle_mixed_24gb.py's test), GPU-seconds
spent on requests that cannot meet their deadline (Qwen-Image S on 24 GB, or any request past its deadline), misses
among feasible requests: their queueing before the first task, time between tasks, the SP degrees of their denoise
chunks, their slack alone (window - best streamed time); misses by 5-minute arrival bin.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving20/diag_24gb.py SEED [LOAD] [POLICIES]
"""
import collections
import statistics
import sys
import time

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
load = float(sys.argv[2]) if len(sys.argv) > 2 else 1.2
pols = sys.argv[3].split(",") if len(sys.argv) > 3 else ["edf", "memory-aware"]
costs = shipped_costs("H100")
reqs = generate_workload("gfdit", gpus=64, minutes=60, load=load, seed=seed, costs=costs)


def best_s(r):
    m = costs.model(r.model)
    return min(m.request_ms(r, d, True, 24.0) for d in m.degrees) / 1e3


feasible = {r.id for r in reqs if r.arrival_s + best_s(r) <= r.deadline_s + 1e-9}
met = {}
for p in pols:
    t0 = time.process_time()
    res = simulate(reqs, 64, p, costs, SimConfig(mem_gb=(24.0,) * 64))
    rq = {r.id: r for r in res.requests}
    ok = {r.id for r in res.requests if res.finish_s.get(r.id, 1e18) <= r.deadline_s + 1e-9}
    met[p] = ok
    tot = collections.Counter((r.model[:4], r.klass) for r in res.requests)
    fe = collections.Counter((r.model[:4], r.klass) for r in res.requests if r.id in feasible)
    by = collections.Counter((r.model[:4], r.klass) for r in res.requests if r.id in ok)
    gs_all = collections.Counter()
    gs_hopeless = collections.Counter()
    gs_late = collections.Counter()
    first = {}
    busy_gaps = collections.defaultdict(float)
    last_end = {}
    degs = collections.defaultdict(collections.Counter)
    for rec in res.records:
        rid = rec.task.request
        r = rq[rid]
        g = (rec.end_s - rec.start_s) * len(rec.task.group)
        k = (r.model[:4], r.klass)
        gs_all[k] += g
        if rid not in feasible:
            gs_hopeless[k] += g
        elif rec.start_s > r.deadline_s:
            gs_late[k] += g
        if rec.task.kind == "reshard":
            continue
        first.setdefault(rid, rec.start_s)
        if rid in last_end:
            busy_gaps[rid] += max(0.0, rec.start_s - last_end[rid])
        last_end[rid] = rec.end_s
        if rec.task.kind == "denoise":
            degs[k][len(rec.task.group)] += 1
    print(f"{p}: met {len(ok)}/{len(reqs)} (feasible alone {len(feasible)}) cpu {time.process_time() - t0:.1f}s "
          f"reshards {res.summary['reshards']} busy {res.summary['gpu_busy']}")
    print("   met / feasible / requests per (model, class):",
          {f"{k[0]}/{k[1]}": f"{by[k]}/{fe[k]}/{tot[k]}" for k in sorted(tot)})
    print("   GPU-s all / on infeasible requests / on feasible ones after their deadline:",
          {f"{k[0]}/{k[1]}": f"{gs_all[k]:.0f}/{gs_hopeless[k]:.0f}/{gs_late[k]:.0f}" for k in sorted(tot)})
    print("   denoise chunk degrees:", {f"{k[0]}/{k[1]}": dict(sorted(v.items())) for k, v in sorted(degs.items())})
    lost = [rq[i] for i in feasible - ok]
    bins = collections.Counter(int(r.arrival_s // 300) for r in lost)
    print("   feasible misses by 5-min arrival bin:", dict(sorted(bins.items())))
    for k in sorted({(r.model[:4], r.klass) for r in lost}):
        ls = [r for r in lost if (r.model[:4], r.klass) == k]
        q = [first[r.id] - r.arrival_s for r in ls]
        gaps = [busy_gaps[r.id] for r in ls]
        sl = [r.deadline_s - r.arrival_s - best_s(r) for r in ls]
        late = [res.finish_s[r.id] - r.deadline_s for r in ls]
        print(f"   missed feasible {k[0]}/{k[1]}: {len(ls)}; first-task wait median {statistics.median(q):.1f} s "
              f"(max {max(q):.1f}); waits between tasks median {statistics.median(gaps):.1f} s; slack alone median "
              f"{statistics.median(sl):.1f} s; late by median {statistics.median(late):.1f} s")
if len(pols) == 2:
    a, b = pols
    for x, y in ((a, b), (b, a)):
        only = met[x] - met[y]
        print(f"met by {x} not {y}:", dict(collections.Counter(
            (rq[i].model[:4], rq[i].klass) for i in only)))
