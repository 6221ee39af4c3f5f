"""serving19: same seed, same summary.json and trace.json, byte for byte (memory-aware after the change; edf-gfdit
under SimConfig(sender_wait=True)); gfdit mix, 16 x H100 (80 GB), 10 minutes, load 1.2, seed 0.

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving19/determinism.py
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gfdit_literal import EDFGFDiT  # noqa: E402

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate  # noqa: E402
from cfcompile.elastic.serving.planned import shipped_costs  # noqa: E402

costs = shipped_costs("H100")
reqs = generate_workload("gfdit", gpus=16, minutes=10, load=1.2, seed=0, costs=costs)
with tempfile.TemporaryDirectory() as tmp:
    for name, make, wait in (("memory-aware", lambda: "memory-aware", False), ("edf-gfdit", EDFGFDiT, True)):
        outs = [simulate(reqs, 16, make(), costs, SimConfig(mem_gb=80.0, sender_wait=wait)).write(Path(tmp) / f"{name}{i}")
                for i in range(2)]
        same = all((outs[0] / f).read_bytes() == (outs[1] / f).read_bytes() for f in ("summary.json", "trace.json"))
        print(name, "summary.json and trace.json identical:", same)
