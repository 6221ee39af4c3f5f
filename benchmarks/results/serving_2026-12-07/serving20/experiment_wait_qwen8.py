"""serving20, experiment only: experiment_wait.py's ``wait`` and ``wait+last`` on serving17's 8-GPU Qwen-Image sweep cells
(fits and 24 GB pools, loads 0.6-1.2, seeds 0-3), to compare with memory-aware there (serving19/sweep8_after.jsonl; edf: serving17/sweep8_after.jsonl).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving20/experiment_wait_qwen8.py > .../experiment_wait_qwen8.jsonl
"""
import json
import sys
from pathlib import Path

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import MemoryAware

costs = shipped_costs("H100")
before = {}
for name in ("serving17", "serving19"):  # edf from serving17 (unchanged since), memory-aware from serving19 (current)
    for line in open(Path(__file__).parent.parent / name / "sweep8_after.jsonl"):
        e = json.loads(line)
        before[(e["pool"], e["load"], e["seed"], e["policy"])] = e["met"]


class WaitLast(MemoryAware):
    """Both of serving17 change 2's rules on every pool: wait rather than run at a degree that misses, and a late
    request always goes last (hold_s unbounded)."""

    name = "wait+last"

    def _mixed(self, model, view):
        return True


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


for pool, mem in (("fits", 80.0), ("24 GB", 24.0)):
    for load in (0.6, 0.8, 1.0, 1.2):
        for seed in (0, 1, 2, 3):
            reqs = generate_workload("gfdit:qwen-image", gpus=8, minutes=10, load=load, seed=seed, costs=costs)
            row = {"pool": pool, "load": load, "seed": seed, "requests": len(reqs)}
            for pol in (Wait(), WaitLast()):
                s = simulate(reqs, 8, pol, costs, SimConfig(mem_gb=mem)).summary
                row[pol.name] = round(s["slo_attainment"] * s["requests"])
            print(json.dumps({**row,
                              "memory-aware (serving19)": before.get((pool, load, seed, "memory-aware")),
                              "edf (serving17)": before.get((pool, load, seed, "edf"))}), flush=True)
