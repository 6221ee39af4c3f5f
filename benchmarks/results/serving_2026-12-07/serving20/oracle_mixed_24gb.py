"""serving20: upper bound on the requests any policy can bring in by their deadline, both models (gfdit mix:
Qwen-Image + Wan), 64 x 24 GB GPUs, 60-minute trace, H100 costs, loads 0.6-1.2, seeds 0-3.

On 24 GB neither model is resident (Qwen-Image 57.7 GB, Wan 40.2 GB of weights): every task streams, nothing is
loaded (``placement.Memory.plan``: a streamed group loads nothing, so no load time is charged, as the simulator
charges none), and a group streams at 24 GB whatever its width (weights replicate under SP).

Per request (same method as serving16c/oracle.py, serving18/oracle_24gb.py, serving17/oracle_pools.py):
- its best streamed time with no queueing, no reshard: the cost table's ``request_ms(r, d, streamed=True, 24)``
  at the best SP degree d (``time_1deg``), and, looser still, every stage at its own best degree (text encode and
  VAE at 1 as the simulator runs them, prepare and every denoise step at the degree that is fastest for it:
  chunks may change degree; ``time_relaxed``). The request is *feasible* if arrival + time <= deadline
  (the relaxed time is used: it is <= the one-degree time). Its cheapest GPU-seconds: every stage at the degree
  that minimises d x its time, over the degrees whose whole-request time is still feasible (relaxed: over all).
- ``bound_total``: the feasible ones, cheapest first, that fit 64 x (last feasible deadline) GPU-seconds
  (serving18's capacity bound).
- ``bound``: for every interval [a, b] with a an arrival and b a deadline, the met requests whose window lies
  inside it do all their work there, so cheapest-first at most fit(inside, 64 x (b - a));
  met <= feasible - inside + fit, minimised over all such intervals (serving17's interval bound, evaluated
  exactly at arrivals x deadlines instead of a 2.5 s grid: for fixed membership a later a / earlier b only
  shrinks the budget).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving20/oracle_mixed_24gb.py > .../oracle_mixed_24gb.jsonl
"""
import json
import sys
from collections import Counter

from cfcompile.elastic.serving import generate_workload
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.requests import DENOISE, PREPARE, TEXT_ENCODE, VAE_DECODE

GPUS, MEM, MINUTES = 64, 24.0, 60
costs = shipped_costs("H100")


def stage_options(m, r):
    """Per stage, [(ms, degree)] streamed at MEM: text encode and VAE at 1, prepare and a denoise step per degree."""
    x = m.tokens(r)
    te = m._streamed_other_ms(TEXT_ENCODE, m.stage_ms(TEXT_ENCODE, x))
    vae = m._streamed_other_ms(VAE_DECODE, m.stage_ms(VAE_DECODE, x))
    prep = {d: m._streamed_other_ms(PREPARE, m.stage_ms(PREPARE, x, d)) for d in m.degrees}
    step = {d: m.streamed_step_ms(m.stage_ms(DENOISE, x, d) * (m.cfg_factor if r.cfg else 1.0), MEM)
            for d in m.degrees}
    return te, vae, prep, step


def per_request(r):
    m = costs.model(r.model)
    te, vae, prep, step = stage_options(m, r)
    one = {d: te + vae + prep[d] + r.steps * step[d] for d in m.degrees}
    for d in m.degrees:  # the helper must agree with the cost table's own request time
        assert abs(one[d] - m.request_ms(r, d, True, MEM)) < 1e-6 * max(1.0, one[d]), (r.id, d)
    t_one = min(one.values()) / 1e3
    t_rel = (te + vae + min(prep.values()) + r.steps * min(step.values())) / 1e3
    gs_rel = (te + vae + min(d * v for d, v in prep.items()) + r.steps * min(d * v for d, v in step.items())) / 1e3
    window = r.deadline_s - r.arrival_s
    return t_one, t_rel, gs_rel, window


def fit(counts, cap):
    """How many items fit cap, cheapest first; counts: Counter cost -> n (few distinct costs: 3 classes x 2 models)."""
    n = 0
    for c in sorted(counts):
        k = counts[c]
        if k == 0:
            continue
        take = min(k, int(cap // c)) if c > 0 else k
        n += take
        cap -= take * c
        if take < k:
            break
    return n


def bound(feas):
    """feas: [(arrival, deadline, gpu_s)]. Returns (capacity bound over the whole trace, interval bound, where)."""
    n = len(feas)
    last = max(f[1] for f in feas)
    total = fit(Counter(round(f[2], 9) for f in feas), GPUS * last)
    best, where = n, None
    by_dead = sorted(feas, key=lambda f: f[1])
    arrivals = sorted({f[0] for f in feas})
    for a in arrivals:
        inside = Counter()
        cnt = 0
        later = [f for f in by_dead if f[0] >= a]
        i = 0
        while i < len(later):
            b = later[i][1]
            while i < len(later) and later[i][1] == b:
                inside[round(later[i][2], 9)] += 1
                cnt += 1
                i += 1
            u = n - cnt + fit(inside, GPUS * (b - a))
            if u < best:
                best, where = u, (round(a, 2), round(b, 2))
    return total, best, where


loads = [float(x) for x in (sys.argv[1].split(",") if len(sys.argv) > 1 else "0.6,0.8,1.0,1.2".split(","))]
seeds = [int(x) for x in (sys.argv[2].split(",") if len(sys.argv) > 2 else "0,1,2,3".split(","))]
for load in loads:
    for seed in seeds:
        reqs = generate_workload("gfdit", gpus=GPUS, minutes=MINUTES, load=load, seed=seed, costs=costs)
        feas, per_class, one_deg = [], {}, 0
        for r in reqs:
            t_one, t_rel, gs, window = per_request(r)
            key = f"{r.model}:{r.klass}"
            pc = per_class.setdefault(key, [0, 0])
            pc[1] += 1
            if t_one <= window + 1e-9:
                one_deg += 1
            if t_rel <= window + 1e-9:
                pc[0] += 1
                feas.append((r.arrival_s, r.deadline_s, gs))
        total, b, where = bound(feas)
        print(json.dumps({"load": load, "seed": seed, "requests": len(reqs), "feasible_alone": len(feas),
                          "feasible_alone_one_degree": one_deg, "per_class_feasible_of": dict(sorted(per_class.items())),
                          "bound_total": total, "bound": b, "bound_frac": round(b / len(reqs), 4),
                          "tightest_interval_s": where}), flush=True)
