"""serving19: which of memory-aware's two memory inputs moves it away from edf-triage with both models on 64 x H100?

On a pool where every model fits every GPU, memory-aware differs from edf-triage in two things only:
  pricing:   a candidate group is priced with view.group_s (its model load included) instead of the resident time;
  placement: free GPUs holding the request's model come first (``_rest_key``) instead of edf's (waiting state, rank).
``ma-placement`` keeps only the placement, ``ma-pricing`` only the pricing, ``ma-neither`` neither (it must equal
edf-triage, met and loads alike: the check that these are the only two differences).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving19/ablation_mixed.py LOAD SEEDS > OUT.jsonl
"""
import json
import sys

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import MemoryAware


class _ResidentPrices:
    """The view, but a group is priced as edf prices a degree: resident, no load."""

    def __init__(self, view):
        self._view = view

    def __getattr__(self, name):
        return getattr(self._view, name)

    def group_s(self, rid, group):
        return self._view.remaining_s(rid, len(group))


class PlacementOnly(MemoryAware):
    def schedule(self, view):
        return super().schedule(_ResidentPrices(view))


class PricingOnly(MemoryAware):
    def _rest_key(self, task, view, taken):
        return lambda g: (taken.get(g, 0), g)


class Neither(PlacementOnly):
    def _rest_key(self, task, view, taken):
        return lambda g: (taken.get(g, 0), g)


costs = shipped_costs("H100")
load = float(sys.argv[1])
for seed in [int(s) for s in sys.argv[2].split(",")]:
    reqs = generate_workload("gfdit", gpus=64, minutes=60, load=load, seed=seed, costs=costs)
    row = {"seed": seed, "load": load, "requests": len(reqs)}
    for name, p in (("edf", "edf"), ("edf-triage", "edf-triage"), ("memory-aware", "memory-aware"),
                    ("ma-placement", PlacementOnly()), ("ma-pricing", PricingOnly()), ("ma-neither", Neither())):
        s = simulate(reqs, 64, p, costs, SimConfig(mem_gb=(80.0,) * 64)).summary
        row[name] = [round(s["slo_attainment"] * s["requests"]), s["model_loads"], s["reshards"]]
    print(json.dumps(row), flush=True)
