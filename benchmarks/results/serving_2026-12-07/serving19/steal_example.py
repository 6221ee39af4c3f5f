"""serving19: the mechanism behind memory-aware's small losses at low load (gfdit, 64 x H100, 60 min, load 0.6,
seed 3): what ran on GPU 39 around r00505 (Qwen-Image S), and which GPUs were free when r00504 was placed.

    PYTHONPATH=<checkout> python benchmarks/results/serving_2026-12-07/serving19/steal_example.py > OUT.txt
(before: a git archive of 05ea4b3; after: this commit)
"""
import cfcompile
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs

print("cfcompile from", cfcompile.__file__)
costs = shipped_costs("H100")
reqs = generate_workload("gfdit", gpus=64, minutes=60, load=0.6, seed=3, costs=costs)
for policy in ("edf", "memory-aware"):
    res = simulate(reqs, 64, policy, costs, SimConfig(mem_gb=(80.0,) * 64))
    rq = {r.id: r for r in res.requests}
    s = res.summary
    print(f"\n{policy}: met {round(s['slo_attainment'] * s['requests'])} of {s['requests']}")
    for rid in ("r00504", "r00505"):
        r = rq[rid]
        print(f"  {rid} {r.model} {r.klass} arrival {r.arrival_s:.2f} deadline {r.deadline_s:.2f} "
              f"finish {res.finish_s[rid]:.2f}")
        for rec in res.records:
            if rec.task.request == rid and rec.task.index <= 3:
                print(f"     {rec.task.id:22s} {rec.start_s:9.2f}-{rec.end_s:9.2f} on {rec.task.group} "
                      f"load {rec.load_ms:.0f} ms")
    te = next(rec for rec in res.records if rec.task.id == "r00505/text_encode")
    t = te.end_s
    busy = {g for rec in res.records if rec.start_s < t < rec.end_s or (rec.start_s == t and rec.task.request != "r00504") for g in rec.task.group}
    started = [rec for rec in res.records if rec.start_s == t]
    print(f"  at {t:.2f} (r00505's text encode ends on {te.task.group}): placed "
          + ", ".join(f"{rec.task.id} on {rec.task.group}" for rec in started))
    print(f"  GPUs free then, besides those: {sorted(set(range(64)) - busy - {g for rec in started for g in rec.task.group})}")
