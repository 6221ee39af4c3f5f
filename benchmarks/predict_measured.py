"""The cost model's predictions for configurations already measured on a GPU (CPU only, meta device).

    python benchmarks/predict_measured.py            # table: measured vs predicted step time and peak memory

Each row rebuilds exactly the plan that was measured (chunk size, resident fraction and fixed prefetch depth 1 of
the benchmark runs: `make_plan`, the plan without the model's placement) and predicts it with the built-in H100
profile. Rows with resident fraction 1.0 ("inductor") compare the model's compute estimate with Inductor without
offloading. Measurements: benchmarks/results/*.json (H100, torch 2.11, 2026-11-23).
"""

from __future__ import annotations

import json
import sys

import torch
from tabulate import tabulate

from cfcompile import ChunkFlowConfig
from cfcompile.costmodel import PROFILES, estimate_costs
from cfcompile.offload import planned_layout
from cfcompile.plan.analysis import find_weight_reads
from cfcompile.plan.layout import make_plan
from cfcompile.plan.search import predict_plan
from cfcompile.planning import capture_graphs
from cfcompile.presets import Workload, get_preset

# (preset, workload, resident fraction or None for Inductor, measured step ms, measured peak alloc GiB, source)
MEASURED = [
    ("flux", dict(height=512, width=512), None, 44.2, 22.30, "results/flux_1024_h100.json"),
    ("flux", dict(height=512, width=512), 0.0, 442.1, 1.55, "results/flux_1024_h100.json"),
    ("flux", dict(height=512, width=512), 0.5, 232.7, 12.95, "results/flux_1024_h100.json"),
    ("flux", dict(height=1024, width=1024), None, 131.2, 22.50, "results/flux_4096_h100.json"),
    ("flux", dict(height=1024, width=1024), 0.0, 441.2, 1.87, "results/flux_4096_h100.json"),
    ("flux", dict(height=1024, width=1024), 0.5, 232.6, 13.28, "results/flux_4096_h100.json"),
    ("flux", dict(height=1024, width=1024), 0.25, 363.4, 5.69, "results/demo_flux_2026-11-23.log"),
    ("sd3", dict(height=1024, width=1024), None, 71.0, 15.86, "results/dev_sd3_4096_h100.json"),
    ("sd3", dict(height=1024, width=1024), 0.5, 154.3, 8.59, "results/dev_sd3_4096_h100.json"),
    ("wan", dict(height=480, width=832, frames=17), 0.0, 547.6, 3.25, "results/dev_wan_7800_h100.json"),
]


def main() -> int:
    profile = PROFILES["H100"]
    rows, cache = [], {}
    for name, wl, rf, step, peak, source in MEASURED:
        key = (name, tuple(sorted(wl.items())))
        if key not in cache:
            preset = get_preset(name)
            model = preset.build("meta")
            inputs = preset.inputs(model.config, Workload(**wl), "meta", torch.bfloat16)
            (gm, ex), = capture_graphs(model, inputs)
            layout = planned_layout(model)
            reads = find_weight_reads(gm, ex, locate=lambda t: layout.get(id(t)))
            cache[key] = (reads, estimate_costs(gm, ex, profile, [r.input_index for r in reads]))
        reads, costs = cache[key]
        if rf is None:  # no offloading: the compute estimate, all weights resident
            p_step, p_peak = costs.total_ms, (sum(r.nbytes for r in reads) + costs.peak_activation_bytes) / 2**30
            label = "inductor (no offload)"
        else:
            plan = make_plan(reads, ChunkFlowConfig(chunk_size="16MiB", resident_fraction=rf, prefetch_depth=1))
            pred = predict_plan(plan, costs, profile)
            p_step, p_peak, label = pred.step_ms, pred.peak_bytes / 2**30, f"chunkflow rf={rf}"
        rows.append((name, Workload(**wl).height, Workload(**wl).width, wl.get("frames", 1), label, step,
                     round(p_step, 1), f"{(p_step - step) / step * 100:+.1f}%", peak, round(p_peak, 2),
                     f"{(p_peak - peak) / peak * 100:+.1f}%", source))
        print(rows[-1], flush=True)
    print(tabulate(rows, headers=["model", "height", "width", "frames", "config", "measured ms", "predicted ms",
                                  "error", "measured GiB", "predicted GiB", "error", "measurement"],
                   tablefmt="github"))
    json.dump(rows, sys.stdout if "--json" in sys.argv else open("/dev/null", "w"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
