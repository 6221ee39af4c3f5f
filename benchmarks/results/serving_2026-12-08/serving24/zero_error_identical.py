"""serving24: summary.json + trace.json hashes of 30 runs (8 GPUs, 3 pools, 5 policies) with SimConfig defaults, to compare
the code before duration_error (70c7949) and after (0f45a70) byte for byte:

    PYTHONPATH=<checkout> python zero_error_identical.py > zero_error_identical_<commit>.txt
"""
import hashlib, sys, tempfile, statistics
from pathlib import Path
import cfcompile.elastic.serving as S
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate, shipped_costs
print(S.__file__, file=sys.stderr)
costs = shipped_costs("H100")
for mix in ("gfdit", "gfdit:qwen-image"):
    reqs = generate_workload(mix, gpus=8, minutes=10, load=1.2, seed=1, costs=costs)
    for mem in ((80.0,)*8, (80.0,)*4+(24.0,)*4, (48.0,)*8):
        for pol in ("edf", "edf-triage", "memory-aware", "static-2", "srtf"):
            with tempfile.TemporaryDirectory() as d:
                out = simulate(reqs, 8, pol, costs, SimConfig(mem_gb=mem)).write(Path(d))
                h = hashlib.sha256((out / "summary.json").read_bytes() + (out / "trace.json").read_bytes()).hexdigest()[:16]
            print(mix, mem[-1], pol, len(reqs), h)
