"""serving19: met per (model, class), edf vs memory-aware (and edf-rev, the control), gfdit, 64 x H100, 60 min,
load 1.2, seeds 0-15 — is memory-aware's per-seed loss always Wan M, and is that systematic?

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving19/per_class_seeds.py > per_class_seeds.jsonl
"""
import collections
import json
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from seeds_mixed_rev import EDFRev  # noqa: E402

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate  # noqa: E402
from cfcompile.elastic.serving.planned import shipped_costs  # noqa: E402

costs = shipped_costs("H100")
for seed in range(16):
    reqs = generate_workload("gfdit", gpus=64, minutes=60, load=1.2, seed=seed, costs=costs)
    row = {"seed": seed}
    for name, p in (("edf", "edf"), ("edf-rev", EDFRev()), ("memory-aware", "memory-aware")):
        res = simulate(reqs, 64, p, costs, SimConfig(mem_gb=(80.0,) * 64))
        c = collections.Counter(f"{r.model}/{r.klass}" for r in res.requests if res.finish_s[r.id] <= r.deadline_s + 1e-9)
        row[name] = dict(sorted(c.items()))
    print(json.dumps(row), flush=True)
