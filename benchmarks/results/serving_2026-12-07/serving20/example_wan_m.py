"""serving20: streamed times per degree on 24 GB for each class of both models (seed 0 trace), then the task
timelines of the first Wan M requests memory-aware misses on 64 x 24 GB, load 1.2 (which degree each chunk ran at).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving20/example_wan_m.py 0 1.2 > .../example_wan_m_seed0.txt
"""
import collections, sys
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
costs = shipped_costs("H100")
seed, load = int(sys.argv[1]), float(sys.argv[2])
reqs = generate_workload("gfdit", gpus=64, minutes=60, load=load, seed=seed, costs=costs)
m = costs.model("wan")
r0 = next(r for r in reqs if r.model == "wan" and r.klass == "M")
print("wan M per degree streamed 24:", {d: round(m.request_ms(r0, d, True, 24.0)/1e3, 1) for d in m.degrees},
      "resident", {d: round(m.request_ms(r0, d)/1e3, 1) for d in m.degrees}, "window", round(r0.deadline_s - r0.arrival_s, 1))
for k in ("S", "L"):
    r1 = next(r for r in reqs if r.model == "wan" and r.klass == k)
    print("wan", k, {d: round(m.request_ms(r1, d, True, 24.0)/1e3, 1) for d in m.degrees}, "window", round(r1.deadline_s - r1.arrival_s, 1))
q = costs.model("qwen-image")
for k in ("S", "M", "L"):
    r1 = next(r for r in reqs if r.model == "qwen-image" and r.klass == k)
    print("qwen", k, {d: round(q.request_ms(r1, d, True, 24.0)/1e3, 1) for d in q.degrees}, "window", round(r1.deadline_s - r1.arrival_s, 1))
res = simulate(reqs, 64, "memory-aware", costs, SimConfig(mem_gb=(24.0,) * 64))
rq = {r.id: r for r in res.requests}
miss = [r for r in res.requests if r.model == "wan" and r.klass == "M" and res.finish_s[r.id] > r.deadline_s]
by = collections.defaultdict(list)
for rec in res.records: by[rec.task.request].append(rec)
for r in miss[:4]:
    print(r.id, "arr", round(r.arrival_s, 1), "dl", round(r.deadline_s, 1), "fin", round(res.finish_s[r.id], 1))
    for rec in by[r.id]:
        print("   ", rec.task.kind, getattr(rec.task, "n_steps", ""), len(rec.task.group), round(rec.start_s, 1), round(rec.end_s, 1))
