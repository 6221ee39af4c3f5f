"""serving25 diagnostic: why memory-aware's wait rule (wait="expected") loses under prediction error.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-08/serving25/diag.py CELL LOAD SEED SIGMA [WAIT_KW_JSON]

Logs every wait decision of memory-aware (request, the awaited group's predicted free time, the latest start at
that degree, whether the group counted GPUs running past their predicted end), then joins with the trace: when
the awaited GPUs actually freed, when the request's next task started, at what degree, and whether it met.
"""
import json
import sys
from collections import defaultdict

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving import policies as P

cell, load, seed, sigma = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
kw = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
mix, gpus, minutes = {"qwen8": ("gfdit:qwen-image", 8, 10.0), "mixed64": ("gfdit", 64, 60.0)}[cell]
costs = shipped_costs("H100")
reqs = generate_workload(mix, gpus=gpus, minutes=minutes, load=load, seed=seed, costs=costs)

waits = []  # (now, task id, request, degree, group, predicted free, latest start, overrun gpus, held idle)


class Logged(P.MemoryAware):
    def _wider_expected(self, task, req, n_free, free, expected, view):
        g = super()._wider_expected(task, req, n_free, free, expected, view)
        if g is not None:
            avail = dict((gg, t) for t, gg in expected.avail(free, view.now))
            over = [gg for gg in g if gg not in free and view._sim.busy[gg] is not None and view._sim.until[gg] <= view.now]
            best = dict(self._best_groups(req.model, view))
            load_ = self._load_unless_held(req, self._held[task.id], view)
            latest = req.deadline_s - load_ - P._remaining_s(view, req, len(g), best[len(g)])
            waits.append((view.now, task.id, req.id, len(g), g, max(avail[gg] for gg in g), latest, over,
                          len(free.intersection(g)), n_free))
        return g


calls = []  # (now, GPUs held idle by waits after this call)


class Logged2(Logged):
    def schedule(self, view):
        out = super().schedule(view)
        calls.append((view.now, len(set(view.free).difference(g for t in out for g in t.group))))
        return out


pol = Logged2(**kw)
res = simulate(reqs, gpus, pol, costs, SimConfig(mem_gb=(80.0,) * gpus, duration_error=sigma, duration_seed=seed))
start = {r.task.id: r for r in res.records}
deadline = {r.id: r.deadline_s for r in res.requests}
met = {rid: res.finish_s[rid] <= deadline[rid] + 1e-9 for rid in res.finish_s}
# GPU g busy intervals -> actual free time after t
busy = defaultdict(list)
for r in res.records:
    for g in r.task.group:
        busy[g].append((r.start_s, r.end_s))


def free_after(g, t):
    """Actual time g next becomes free at or after t (end of the interval covering t)."""
    for s, e in busy[g]:
        if s <= t < e:
            return e
    return t


episodes = {}  # task id -> first wait, count
for w in waits:
    e = episodes.setdefault(w[1], {"first": w, "n": 0, "over": 0})
    e["n"] += 1
    e["over"] += bool(w[7])
n_ep = len(episodes)
wrong = late_group = over_ep = 0
met_ep = 0
wider = 0  # episodes whose task started on more GPUs than were free at its first wait
start_deg = defaultdict(int)
for tid, e in episodes.items():
    now, _, rid, d, g, pred, latest, over, held, _nf = e["first"]
    actual = max(free_after(gg, now) for gg in g)
    wrong += actual > latest + 1e-9
    over_ep += e["over"] > 0
    rec = start.get(tid)
    start_deg[(len(rec.task.group) if rec else None, len(rec.task.group) >= d if rec else None)] += 1
    wider += bool(rec) and len(rec.task.group) > e["first"][9]
    met_ep += met.get(rid, False)
tot_met = sum(met.values())
# free GPUs left idle by a call while waits were pending, until the next call (an upper bound on the held idle time:
# GPUs left idle for other reasons, e.g. a task waiting for its state's holder, are counted too)
wait_t = {w[0] for w in waits}
idle_gpu_s = sum(n * (calls[i + 1][0] - t) for i, (t, n) in enumerate(calls[:-1]) if n and t in wait_t)
# waits that counted a GPU already past its predicted end: how long past the prediction it actually freed
past = [max(free_after(gg, w[0]) for gg in w[7]) - w[0] for w in waits if w[7]]
print(json.dumps({"cell": cell, "load": load, "seed": seed, "sigma": sigma, "kw": kw, "met": tot_met,
                  "requests": len(reqs), "wait_decisions": len(waits), "wait_episodes": n_ep,
                  "episodes_group_actually_late": wrong, "episodes_with_overrun_gpu_counted": over_ep,
                  "episodes_request_met": met_ep, "episodes_started_wider_than_free_at_first_wait": wider,
                  "decisions_with_overrun_gpu": len(past),
                  "overrun_gpu_actual_free_after_decision_s_mean": round(sum(past) / len(past), 2) if past else None,
                  "idle_gpu_s_at_wait_instants": round(idle_gpu_s, 1),
                  "started_at_degree_(deg,>=awaited)": {str(k): v for k, v in sorted(start_deg.items(), key=str)}}))
