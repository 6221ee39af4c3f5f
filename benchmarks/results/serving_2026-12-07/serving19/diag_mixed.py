"""serving19: why memory-aware loses to edf with both models on 64 x H100 (80 GB), 60 min, load 1.2.

Per policy: met per class, model loads and their GPU-seconds, reshards, busy, GPU-seconds spent over the
single-GPU work, misses by class that a load decided (the request would have met its deadline without the seconds
it spent loading), misses by 5-minute arrival bin; then the requests one policy meets and the other misses.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving19/diag_mixed.py SEED [LOAD] [POLICIES]
"""
import collections
import sys
import time

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
load = float(sys.argv[2]) if len(sys.argv) > 2 else 1.2
pols = sys.argv[3].split(",") if len(sys.argv) > 3 else ["edf", "memory-aware"]
costs = shipped_costs("H100")
reqs = generate_workload("gfdit", gpus=64, minutes=60, load=load, seed=seed, costs=costs)
for m in sorted({r.model for r in reqs}):
    mc = costs.model(m)
    print(m, "weight_gb", mc.weight_gb, "act", mc.activation_gb, "load_ms", mc.load_ms)
met = {}
for p in pols:
    t0 = time.process_time()
    res = simulate(reqs, 64, p, costs, SimConfig(mem_gb=(80.0,) * 64))
    s = res.summary
    rq = {r.id: r for r in res.requests}
    ok = {r.id for r in res.requests if r.id in res.finish_s and res.finish_s[r.id] <= r.deadline_s + 1e-9}
    met[p] = (ok, rq)
    by = collections.Counter((r.model, r.klass) for r in res.requests if r.id in ok)
    tot = collections.Counter((r.model, r.klass) for r in res.requests)
    load_gs = sum(rec.load_ms / 1e3 * len(rec.task.group) for rec in res.records if rec.loads)
    load_recs = sum(1 for rec in res.records if rec.loads)
    deg = collections.Counter(len(rec.task.group) for rec in res.records if rec.task.kind == "denoise")
    gs = sum((rec.end_s - rec.start_s) * len(rec.task.group) for rec in res.records)
    work = sum(costs.model(rq[rec.task.request].model).task_ms(rq[rec.task.request], rec.task, 1) / 1e3
               for rec in res.records if rec.task.kind != "reshard")
    lsum = collections.Counter()
    for rec in res.records:
        lsum[rec.task.request] += rec.load_ms / 1e3
    miss = collections.Counter()
    bins = collections.Counter()
    for r in res.requests:
        if r.id not in ok:
            f = res.finish_s[r.id]
            miss[(r.model[:4], r.klass, "load" if f - lsum[r.id] <= r.deadline_s else "other")] += 1
            bins[int(r.arrival_s // 300)] += 1
    print(f"{p}: met {len(ok)}/{len(reqs)} busy {s['gpu_busy']} reshards {s['reshards']} loads {s['model_loads']} "
          f"load tasks {load_recs} load GPU-s {load_gs:.0f} cpu {time.process_time() - t0:.1f}s")
    print("   per (model, class):", {f"{k[0][:4]}/{k[1]}": f"{by[k]}/{tot[k]}" for k in sorted(tot)})
    print("   denoise degrees:", dict(sorted(deg.items())))
    print(f"   GPU-s {gs:.0f} over single-GPU work {work:.0f}: {gs / work - 1:+.2%}")
    print("   misses (model, class, decided by a load or not):", dict(sorted(miss.items())))
    print("   misses by 5-min arrival bin:", dict(sorted(bins.items())),
          " arrivals:", dict(sorted(collections.Counter(int(r.arrival_s // 300) for r in res.requests).items())))
if len(pols) == 2:
    a, b = pols
    only_a = met[a][0] - met[b][0]
    only_b = met[b][0] - met[a][0]
    rq = met[a][1]
    print(f"only {a}: {len(only_a)}", collections.Counter((rq[i].model[:4], rq[i].klass) for i in only_a))
    print(f"only {b}: {len(only_b)}", collections.Counter((rq[i].model[:4], rq[i].klass) for i in only_b))
