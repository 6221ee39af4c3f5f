"""serving20, an experiment only (not adopted; the policy is unchanged): how much of memory-aware's gap to the bound
on both models x 64 x 24 GB (60 min, H100) is the degree rule. Under saturation a Wan M request resumes on the one
GPU that is free, at SP 1, when only SP 2 or wider still meets its deadline; it misses by a chunk and then goes
last (triage). Variants of memory-aware with serving17 change 2's two rules (today only on pools where a model fits
some GPUs and not others) applied on every pool: ``wait``: a request that no free group brings in by its deadline,
and that is not late, waits for GPUs instead of running at a degree that misses (no GPUs are reserved for it; on a
pool where the model fits every GPU this changes nothing); ``last``: a late request always goes last;
``wait+last``: both.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving20/experiment_wait.py LOADS > .../experiment_wait.jsonl
"""
import json
import math
import sys

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import MemoryAware

costs = shipped_costs("H100")


class WaitLast(MemoryAware):
    """Both of serving17 change 2's rules on every pool: wait rather than run at a degree that misses, and a late
    request always goes last (hold_s unbounded)."""

    name = "wait+last"

    def _mixed(self, model, view):
        return True


class Last(MemoryAware):
    """The other rule alone: a late request always goes last (on 24 GB every Qwen-Image S request is late from its
    arrival; memory-aware keeps some in their EDF place, ahead of feasible work, while the queue's slack allows)."""

    name = "last"

    def hold_s(self, task, view):
        return math.inf


class Wait(MemoryAware):
    """The wait rule alone (hold_s as memory-aware's: late requests keep their place where the slack allows)."""

    name = "wait"
    _force = True

    def _mixed(self, model, view):
        return True if self._force else super()._mixed(model, view)

    def hold_s(self, task, view):
        self._force = False
        try:
            return super().hold_s(task, view)
        finally:
            self._force = True


for load in [float(x) for x in sys.argv[1].split(",")]:
    for seed in (0, 1, 2, 3):
        reqs = generate_workload("gfdit", gpus=64, minutes=60, load=load, seed=seed, costs=costs)
        row = {"load": load, "seed": seed, "requests": len(reqs), "pool": "24 GB"}
        for pol in (Wait(), Last(), WaitLast()):
            s = simulate(reqs, 64, pol, costs, SimConfig(mem_gb=(24.0,) * 64)).summary
            row[pol.name] = round(s["slo_attainment"] * s["requests"])
            row[pol.name + " per_class"] = {k: round(v["slo_attainment"] * v["requests"]) for k, v in s["per_class"].items()}
        print(json.dumps(row), flush=True)
