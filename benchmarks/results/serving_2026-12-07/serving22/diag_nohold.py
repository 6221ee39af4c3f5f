"""serving22 diagnostic (not a candidate, nothing adopted): is the Qwen-Image-alone 64 x 48 GB load 1.2 loss of
wait="expected" from keeping idle the free GPUs a waiting request counts on? Variant "nohold": the same rule, but
those free GPUs stay free for the requests after it at that instant (monkeypatched here; the library is unchanged).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving22/diag_nohold.py > .../diag_nohold.jsonl
"""
import json
import sys

import cfcompile  # noqa: F401

sys.path.insert(0, "benchmarks")
from bench_serving import MEMORY_POOLS  # noqa: E402

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate  # noqa: E402
from cfcompile.elastic.serving import policies  # noqa: E402
from cfcompile.elastic.serving.placement import parse_gpu_memory  # noqa: E402
from cfcompile.elastic.serving.planned import shipped_costs  # noqa: E402


class NoHold(policies.MemoryAware):
    name = "nohold"

    def schedule(self, view):
        orig = policies._Expected.reserve
        policies._Expected.reserve = lambda self_, group, free: self_.reserved.update(group)
        try:
            return super().schedule(view)
        finally:
            policies._Expected.reserve = orig


costs = shipped_costs("H100")
cells = [("gfdit:qwen-image", 10, "48 GB", 1.2, 0), ("gfdit:qwen-image", 10, "48 GB", 1.2, 1),
         ("gfdit", 60, None, 1.2, 5), ("gfdit", 60, None, 1.2, 9)]
for mix, minutes, pool, load, seed in cells:
    mem = (80.0,) * 64 if pool is None else parse_gpu_memory(MEMORY_POOLS[pool].format(half=32), 64)
    reqs = generate_workload(mix, gpus=64, minutes=minutes, load=load, seed=seed, costs=costs)
    row = {"mix": mix, "pool": pool or "80 GB", "load": load, "seed": seed, "requests": len(reqs)}
    for name, pol in (("memory-aware", "memory-aware"), ("nohold", NoHold())):
        s = simulate(reqs, 64, pol, costs, SimConfig(mem_gb=mem)).summary
        row[name] = round(s["slo_attainment"] * s["requests"])
    print(json.dumps(row), flush=True)
