"""Which device allocations are alive at the peak of one chunkflow step, next to the cost model's live-bytes estimate.

    python benchmarks/memory_snapshot.py --model wan --height 480 --width 832 --frames 17 --rf 0 --out DIR

Records the CUDA caching allocator's history (`torch.cuda.memory._record_memory_history`) over one step after
warm-up, replays it to find the moment of peak allocated bytes and lists the allocations alive then (size, the
Python frames that made them, e.g. a line of Inductor's generated code), and the model's predicted activation
peak with the Dynamo nodes around it. Used to find what the activation estimate misses.
"""

from __future__ import annotations

import json
import linecache
import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
import cfcompile  # noqa: E402
from cfcompile.compiler.backend import chunkflow as chunkflow_backend, compiled_graphs  # noqa: E402
from cfcompile.presets import get_preset  # noqa: E402
from common import workload_of, workload_parser  # noqa: E402


def _frame(f) -> str:
    src = linecache.getline(f["filename"], f["line"]).strip()
    return f"{os.path.basename(f['filename'])}:{f['line']} {f['name']} | {src[:140]}"


def peak_allocations(trace: list[dict], baseline: int):
    """Replay alloc / free_completed; return (peak bytes, live allocations at the peak)."""
    live, cur, peak, at_peak = {}, baseline, baseline, {}
    for e in trace:
        a = e["action"]
        if a == "alloc":
            live[e["addr"]] = e
            cur += e["size"]
            if cur > peak:
                peak, at_peak = cur, dict(live)
        elif a == "free_completed":
            if live.pop(e["addr"], None) is not None:
                cur -= e["size"]
    return peak, list(at_peak.values())


def main() -> None:
    p = workload_parser(__doc__, "wan")
    p.add_argument("--rf", type=float, default=0.0)
    p.add_argument("--chunk-size", default="16MiB")
    p.add_argument("--out", default=".")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preset = get_preset(args.model)
    dev = torch.device("cuda")
    model = preset.build(dev, torch.bfloat16)
    inputs = preset.inputs(model.config, workload_of(args), dev,
                           torch.bfloat16)
    cfcompile.offload(model, device=dev)
    fn = torch.compile(model, backend=chunkflow_backend,
                       options={"resident_fraction": args.rf, "chunk_size": args.chunk_size})
    with torch.no_grad():
        for _ in range(3):
            fn(**inputs)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.memory._record_memory_history(max_entries=1_000_000, stacks="python")
        fn(**inputs)
        torch.cuda.synchronize()
        snap = torch.cuda.memory._snapshot()
        torch.cuda.memory._record_memory_history(enabled=None)
    measured_peak = torch.cuda.max_memory_allocated()
    trace = snap["device_traces"][dev.index or 0]
    peak, live = peak_allocations(trace, baseline)
    g = compiled_graphs()[-1]
    pred, costs, plan = g.prediction, g.costs, g.plan
    GiB = 2 ** 30
    lines = [f"{args.model} {args.height}x{args.width}x{args.frames} rf={args.rf}: graphs {len(compiled_graphs())}",
             f"baseline (before the step) {baseline / GiB:.3f} GiB; max_memory_allocated {measured_peak / GiB:.3f}; "
             f"replayed peak {peak / GiB:.3f}; live trace allocations at the peak {len(live)} = "
             f"{sum(e['size'] for e in live) / GiB:.3f} GiB",
             f"predicted: resident {pred.resident_bytes / GiB:.3f} arena {pred.arena_bytes / GiB:.3f} activations "
             f"{pred.activation_bytes / GiB:.3f} peak {pred.peak_bytes / GiB:.3f}; plan arena "
             f"{plan.total_arena_bytes / GiB:.3f} resident {plan.total_resident_bytes / GiB:.3f}"]
    nodes = list(g.graph.nodes) if hasattr(g, "graph") else []
    lb = list(costs.live_bytes)
    i_peak = max(range(len(lb)), key=lb.__getitem__)
    lines.append(f"predicted activation peak after node {i_peak} of {len(lb)}: {lb[i_peak] / GiB:.3f} GiB")
    lines.append("--- live allocations at the measured peak, largest first (MiB, frames innermost first)")
    for e in sorted(live, key=lambda e: -e["size"])[:60]:
        frames = [f for f in e.get("frames", []) if "torch/" not in f["filename"] or "torchinductor" in f["filename"]]
        lines.append(f"{e['size'] / 2**20:10.2f}  " + "  <-  ".join(_frame(f) for f in frames[:3]))
    by_site: dict[str, int] = {}
    for e in live:
        frames = e.get("frames", [])
        key = _frame(frames[0]) if frames else "?"
        by_site[key] = by_site.get(key, 0) + e["size"]
    lines.append("--- by innermost frame (MiB)")
    for k, v in sorted(by_site.items(), key=lambda kv: -kv[1])[:30]:
        lines.append(f"{v / 2**20:10.2f}  {k}")
    text = "\n".join(lines)
    print(text)
    (out / f"snapshot_{args.model}_rf{args.rf}.txt").write_text(text)
    # the generated code files named in the frames, for reading the allocations in context
    files = {f["filename"] for e in live for f in e.get("frames", []) if "torchinductor" in f["filename"]}
    code = out / f"code_{args.model}_rf{args.rf}"
    code.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, code / os.path.basename(f))
    json.dump(dict(live=[{k: e[k] for k in ("size", "addr")} | {"frames": e.get("frames", [])[:6]} for e in live],
                   live_bytes=lb, baseline=baseline, peak=peak), open(out / f"snapshot_{args.model}_rf{args.rf}.json", "w"))


if __name__ == "__main__":
    main()
