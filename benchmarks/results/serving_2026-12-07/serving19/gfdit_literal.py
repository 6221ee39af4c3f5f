"""serving19: our ``edf`` against a literal port of GF-DiT's EDF best-fit placement (item 2: is ``edf`` faithful?).

GF-DiT (SJTU-Liquid/GF-DiT at 20c2db57 / 7fac5f3b: ``benchmarks/diffusion/policies/edf_best_fit.py`` and
``vllm_omni/diffusion/runtime_v2/policies/edf_best_fit.py``; ``_pick_ranks_for_request`` in ``edf_greedy.py``).
PASS 1 (best fit in EDF order) and PASS 2 (spare GPUs, most urgent first, the smallest faster degree) are the same
code as our ``edf`` (``best_fit``, ``_widen``). What differs is PASS 3, the GPUs:

  GF-DiT: a ready request always takes part, even when its state sits on busy GPUs (its simulator queues the
          reshard on source ∪ destination: the destination GPUs are claimed and idle until the source frees);
          a DiT task takes its last group if that is wholly free at the same degree, else the lowest free ranks;
          text encode / VAE decode take the lowest free rank.
  ours:   a request whose state sits only on busy GPUs waits without claiming GPUs (our simulator's default: a
          reshard needs a free holder); groups take the request's free holders first, then GPUs no other waiting
          request's state sits on, then low ranks.

``edf-gfdit`` below is the literal PASS 3, run with ``SimConfig(sender_wait=True)`` (claimed GPUs wait for the
holder). One liberty: a free holder that will send a reshard is not given to a later task of the same instant (in
GF-DiT's simulator the two would queue on that GPU for the reshard's milliseconds); a task left without GPUs by
that waits for the next instant.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving19/gfdit_literal.py MIX GPUS MINUTES LOADS SEEDS
    e.g. ... gfdit_literal.py gfdit:qwen-image 64 10 0.6,0.8,1.0,1.2 0
"""
import json
import sys
import time

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import EDFBestFit, _widen


class EDFGFDiT(EDFBestFit):
    name = "edf-gfdit"

    def schedule(self, view):
        free = set(view.free)
        plans, budget = [], len(free)
        for t in self.ordered(view):  # PASS 1: every ready request, EDF order, best fit within the budget
            if budget <= 0:
                break
            d = self.degree(t, budget, view) if t.parallel else 1
            if d is not None:
                plans.append([t, d])
                budget -= d
        _widen(plans, budget, view, self.estimate_s)  # PASS 2
        out = []
        for t, d in plans:  # PASS 3, literal
            holders = tuple(view.holders(t.request))
            if len(free) < d:
                continue  # a sender kept back below took the GPU it was planned on: it waits for the next instant
            if not t.parallel:
                group = (min(free),)
            elif holders and len(holders) == d and free.issuperset(holders):
                group = holders
            else:
                group = tuple(sorted(free)[:d])
            free.difference_update(group)
            if holders and free.isdisjoint(group) and not set(group) & set(holders):
                sender = [g for g in holders if g in free]
                if sender:
                    free.discard(sender[0])
            out.append(t.on(group))
        return out


if __name__ == "__main__":
    mix, gpus, minutes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    loads = [float(x) for x in sys.argv[4].split(",")]
    seeds = [int(x) for x in sys.argv[5].split(",")]
    costs = shipped_costs("H100")
    runs = (("static-1", "static-1", False), ("edf", "edf", False), ("edf-gfdit", EDFGFDiT, True),
            ("edf-triage", "edf-triage", False))
    for load in loads:
        for seed in seeds:
            reqs = generate_workload(mix, gpus=gpus, minutes=minutes, load=load, seed=seed, costs=costs)
            row = {"mix": mix, "gpus": gpus, "minutes": minutes, "load": load, "seed": seed, "requests": len(reqs)}
            for name, p, wait in runs:
                t0 = time.process_time()
                s = simulate(reqs, gpus, p() if callable(p) else p, costs,
                             SimConfig(mem_gb=(80.0,) * gpus, sender_wait=wait)).summary
                p95 = s["latency_ms"]["p95"]
                row[name] = [round(s["slo_attainment"] * s["requests"]), s["goodput_rps"], s["reshards"],
                             None if p95 is None else round(p95 / 1e3, 1), s["gpu_busy"],
                             round(time.process_time() - t0, 1)]
            row["edf/static-1"] = round(row["edf"][1] / row["static-1"][1], 2)
            row["edf-gfdit/static-1"] = round(row["edf-gfdit"][1] / row["static-1"][1], 2)
            print(json.dumps(row), flush=True)
