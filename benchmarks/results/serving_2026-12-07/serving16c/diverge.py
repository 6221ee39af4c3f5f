import sys
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
gpus, load, mix, minutes = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
pa, pb = sys.argv[5], sys.argv[6]
costs = shipped_costs("H100")
reqs = generate_workload(mix, gpus=gpus, minutes=minutes, load=load, seed=0, costs=costs)
ra = simulate(reqs, gpus, pa, costs, SimConfig(mem_gb=80.0))
rb = simulate(reqs, gpus, pb, costs, SimConfig(mem_gb=80.0))
for i, (a, b) in enumerate(zip(ra.records, rb.records)):
    if (a.task.id, a.task.group, a.start_s) != (b.task.id, b.task.group, b.start_s):
        print("first divergence at record", i, "t=%.3f" % a.start_s)
        for r in ra.records[max(0,i-3):i+4]: print(" ", pa, r.task.id, r.task.group, "%.3f-%.3f" % (r.start_s, r.end_s), r.load_ms)
        for r in rb.records[max(0,i-3):i+4]: print(" ", pb, r.task.id, r.task.group, "%.3f-%.3f" % (r.start_s, r.end_s), r.load_ms)
        break
met = lambda res: {r.id for r in res.requests if r.id in res.finish_s and res.finish_s[r.id] <= r.deadline_s + 1e-9}
ma, mb = met(ra), met(rb)
print(pa, len(ma), pb, len(mb), "only", pa, sorted(ma - mb)[:10], "only", pb, sorted(mb - ma)[:10])
print("loads", sum(1 for r in ra.records if r.load_ms), sum(1 for r in rb.records if r.load_ms))
