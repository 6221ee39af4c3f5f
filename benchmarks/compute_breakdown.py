"""Where the cost model's compute estimate differs from Inductor on the device: GPU kernel time of one no-offload
step by kernel class (torch.profiler), next to the model's estimate per class.

    python benchmarks/compute_breakdown.py --model wan --height 480 --width 832 --frames 17 --out DIR
    python benchmarks/compute_breakdown.py --model flux --predict-only --profile H200   # CPU: the model's side only

Classes: matmul (cuBLAS / CUTLASS GEMMs, convolutions), attention (flash / cuDNN / efficient attention kernels),
memory-bound (Triton kernels Inductor generates, copies, the rest). The model's side is `GraphCosts.class_ms` on
the meta device with the device's profile (probed on the GPU, or ``--profile``).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
from cfcompile.costmodel import estimate_costs  # noqa: E402
from cfcompile.costmodel.profiles import resolve_profile  # noqa: E402
from cfcompile.planning import capture_graphs  # noqa: E402
from cfcompile.presets import Workload, get_preset  # noqa: E402
from common import workload_of, workload_parser  # noqa: E402

_ATTENTION = re.compile(r"flash|fmha|attention|cudnn|sdpa", re.I)
_MATMUL = re.compile(r"gemm|cutlass|nvjet|xmma|cublas|sm\d+_|conv|implicit", re.I)


def kernel_class(name: str) -> str:
    # Inductor names a Triton kernel after every op fused into it ("..._scaled_dot_product_cudnn_attention_add_copy"
    # is attention's input layout copy): Triton kernels are memory-bound whatever their names say.
    if name.startswith("triton") or "elementwise" in name or "reduce" in name or "copy" in name.lower():
        return "memory-bound"
    if _ATTENTION.search(name):
        return "attention"
    if _MATMUL.search(name):
        return "matmul"
    return "memory-bound"


def predicted(model_name: str, workload: Workload, profile) -> dict:
    preset = get_preset(model_name)
    model = preset.build("meta")
    inputs = preset.inputs(model.config, workload, "meta", torch.bfloat16)
    graphs = capture_graphs(model, inputs)
    out: dict[str, float] = {}
    for gm, ex in graphs:
        for k, v in estimate_costs(gm, ex, profile).class_ms:
            out[k] = out.get(k, 0.0) + v
    return out


def measured(model_name: str, workload: Workload, steps: int = 3) -> tuple[dict, float, list]:
    preset = get_preset(model_name)
    dev = torch.device("cuda")
    model = preset.build(dev, torch.bfloat16)
    inputs = preset.inputs(model.config, workload, dev, torch.bfloat16)
    fn = torch.compile(model, backend="inductor")
    times = []
    with torch.no_grad():
        for _ in range(3):
            fn(**inputs)
        for _ in range(5):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn(**inputs)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                fn(**inputs)
            torch.cuda.synchronize()
    by_class: dict[str, float] = {}
    kernels: dict[str, float] = {}
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", None)
        if us is None:
            us = getattr(e, "self_cuda_time_total", 0.0)
        if not us:
            continue
        ms = us / 1e3 / steps
        by_class[kernel_class(e.key)] = by_class.get(kernel_class(e.key), 0.0) + ms
        kernels[e.key] = kernels.get(e.key, 0.0) + ms
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:25]
    return by_class, statistics.median(times), top


def main() -> int:
    p = workload_parser(__doc__, "flux")
    p.add_argument("--profile", help="profile for the prediction (default: the device's, probed)")
    p.add_argument("--predict-only", action="store_true", help="the model's side only (no GPU needed)")
    p.add_argument("--out", default=".")
    args = p.parse_args()
    wl = workload_of(args)
    profile = resolve_profile(args.profile, "cpu" if args.predict_only else "cuda")
    pred = predicted(args.model, wl, profile)
    row = dict(model=args.model, workload=str(wl), profile=profile.to_json(), predicted_ms=pred)
    if not args.predict_only:
        meas, step_ms, top = measured(args.model, wl)
        row.update(measured_ms=meas, step_ms=step_ms, top_kernels=top, device=torch.cuda.get_device_name(),
                   torch=torch.__version__)
    print(f"{args.model} {wl}, profile {profile.name} ({profile.source})")
    print(f"{'class':14s} {'predicted ms':>13s} {'measured ms':>12s}")
    for k in sorted(set(pred) | set(row.get("measured_ms", {}))):
        m = row.get("measured_ms", {}).get(k)
        print(f"{k:14s} {pred.get(k, 0.0):13.1f} {'' if m is None else f'{m:12.1f}'}")
    total_measured = f"{sum(row['measured_ms'].values()):12.1f}" if "measured_ms" in row else ""
    step = f"   (step, CUDA events: {row['step_ms']:.1f} ms)" if "step_ms" in row else ""
    print(f"{'total':14s} {sum(pred.values()):13.1f} {total_measured}{step}")
    for name, ms in row.get("top_kernels", []):
        print(f"  {ms:8.2f} ms  [{kernel_class(name)}] {name[:110]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"breakdown_{args.model}_{args.height}x{args.width}x{args.frames}.json", "w") as f:
        json.dump(row, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
