"""The chunk-size x residency sweep around a memory budget, for the "within 3% of the best swept configuration"
check of `memory_budget` (CPU only: meta device, the cost model's peak prediction).

    python benchmarks/sweep_configs.py --model flux --height 1024 --width 1024 --budget 8GiB --profile h200.json
    -> inductor-free --groups string for validate_costmodel.py: budget:8GiB plus, per chunk size, the largest
       resident fraction whose predicted peak fits the budget and one a step above it (the prediction may be high)

More residency is never slower at one chunk size, so the fastest configuration that fits a budget sits at the
largest fitting resident fraction of some chunk size: sweeping that boundary, measured, finds the best one without
measuring the whole grid. Rows whose measured peak exceeds the budget are left out when comparing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
from cfcompile.config import ChunkFlowConfig, format_bytes, parse_bytes  # noqa: E402
from cfcompile.costmodel import estimate_costs  # noqa: E402
from cfcompile.costmodel.profiles import resolve_profile  # noqa: E402
from cfcompile.offload import planned_layout  # noqa: E402
from cfcompile.plan.analysis import find_weight_reads  # noqa: E402
from cfcompile.plan.search import plan_with_model  # noqa: E402
from cfcompile.planning import capture_graphs  # noqa: E402
from cfcompile.presets import get_preset  # noqa: E402
from common import workload_of, workload_parser  # noqa: E402

CHUNKS = ("4MiB", "16MiB", "64MiB")


def main() -> int:
    p = workload_parser(__doc__, "flux")
    p.add_argument("--budget", required=True, action="append", help="e.g. 8GiB (repeatable)")
    p.add_argument("--profile", default="H200")
    p.add_argument("--step", type=float, default=0.02, help="resident-fraction step above the boundary")
    p.add_argument("--processes", type=int, default=4, help="split the configs into this many ';' groups")
    args = p.parse_args()
    preset = get_preset(args.model)
    model = preset.build("meta")
    inputs = preset.inputs(model.config, workload_of(args), "meta",
                           torch.bfloat16)
    prof = resolve_profile(args.profile, "cpu")
    gm, ex = max(capture_graphs(model, inputs), key=lambda g: len(list(g[0].graph.nodes)))
    layout = planned_layout(model)
    reads = find_weight_reads(gm, ex, locate=lambda t: layout.get(id(t)))
    costs = estimate_costs(gm, ex, prof, [r.input_index for r in reads])

    def predict(rf: float, chunk: str):
        return plan_with_model(reads, ChunkFlowConfig(chunk_size=chunk, resident_fraction=rf), costs, prof)[1]

    for budget in args.budget:
        limit = parse_bytes(budget, key="--budget")
        configs = [f"budget:{budget}"]
        for chunk in CHUNKS:
            lo, hi = 0.0, 1.0                  # largest rf (to 0.005) with a predicted peak within the budget
            if predict(0.0, chunk).peak_bytes > limit:
                print(f"# {chunk}: nothing fits {budget}", file=sys.stderr)
                continue
            while hi - lo > 0.005:
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if predict(mid, chunk).peak_bytes <= limit else (lo, mid)
            rf = round(lo, 3)
            pr = predict(rf, chunk)
            print(f"# {budget} {chunk}: rf {rf} predicted {pr.step_ms:.1f} ms, peak {format_bytes(pr.peak_bytes)}",
                  file=sys.stderr)
            configs += [f"chunkflow:{rf}:{chunk}", f"chunkflow:{round(min(rf + args.step, 1.0), 3)}:{chunk}"]
        groups = [configs[i::args.processes] for i in range(args.processes)]
        print(";".join(",".join(g) for g in groups if g))
    return 0


if __name__ == "__main__":
    sys.exit(main())
