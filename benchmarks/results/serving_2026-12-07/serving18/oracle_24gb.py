"""serving16c's upper bound on SLO attainment for Qwen-Image on a pool of 24 GB GPUs (every request streams), any
policy, for the pools and cost profiles serving18 ran. Same method as serving16c/oracle.py: a request can meet its
deadline only if its best streamed time (no queueing, best SP degree) fits its window; the met ones need at least
sum(min over degrees of d x time) GPU-seconds, which the pool has only gpus x (last such deadline) of.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving18/oracle_24gb.py > .../oracle_24gb.jsonl
"""
import json

from cfcompile.elastic.serving import generate_workload
from cfcompile.elastic.serving.planned import shipped_costs

for profile in ("H100", "H200"):
    costs = shipped_costs(profile)
    m = costs.model("qwen-image")
    for gpus in (8, 64):
        for load in (0.6, 0.8, 1.0, 1.2):
            reqs = generate_workload("gfdit:qwen-image", gpus=gpus, minutes=10, load=load, seed=0, costs=costs)
            need, by_class, last = [], {}, 0.0
            for r in reqs:
                opts = [d * m.request_ms(r, d, True, 24.0) / 1e3 for d in m.degrees
                        if r.arrival_s + m.request_ms(r, d, True, 24.0) / 1e3 <= r.deadline_s]
                by_class.setdefault(r.klass, [0, 0])[1] += 1
                if opts:
                    need.append(min(opts))
                    by_class[r.klass][0] += 1
                    last = max(last, r.deadline_s)
            cap, n = gpus * last, 0
            for g in sorted(need):
                if cap < g:
                    break
                cap -= g
                n += 1
            print(json.dumps({"profile": profile, "gpus": gpus, "load": load, "requests": len(reqs),
                              "feasible_alone": len(need), "per_class_feasible_of": by_class,
                              "capacity_bound": n, "bound_frac": round(n / len(reqs), 3)}), flush=True)
