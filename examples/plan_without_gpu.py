"""Plan a model for a GPU you do not have: what chunkflow would stream, keep resident, and how long a step takes.

    python examples/plan_without_gpu.py                      # Flux.1 at 1024x1024 on an H100 under 12 GiB
    python examples/plan_without_gpu.py --model wan --height 480 --width 832 --frames 81 --profile H200 \
        --memory-budget 16GiB --out plan-wan/
    python examples/plan_without_gpu.py --tiny               # the preset's tiny config, in seconds (CI runs it)

`cfcompile.plan_model` builds the real model on the meta device (no weights, no memory), traces it with Dynamo,
lays its weights out as `cfcompile.offload` would, and runs the backend's cost model and planner for the device
profile. ``CFCOMPILE_EXAMPLES_TINY=1`` is the same as ``--tiny``.
"""

import argparse
import os

import cfcompile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="flux", help="a preset: flux, qwen-image, wan, sd3")
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("CFCOMPILE_EXAMPLES_TINY") == "1",
                    help="the preset's tiny config at a small size")
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--profile", default="H100", help="H100, H200, A100, L40S, RTX4090 or a JSON file")
    ap.add_argument("--memory-budget", default="12GiB")
    ap.add_argument("--out", help="write plan.json, prediction.json, timeline.json (Perfetto) here")
    args = ap.parse_args()

    size = dict(height=64, width=64) if args.tiny else dict(height=args.height, width=args.width)
    workload = cfcompile.Workload(**size, frames=args.frames if args.model == "wan" else 1)
    budget = "64MiB" if args.tiny else args.memory_budget
    report = cfcompile.plan_model(args.model, workload, profile=args.profile, tiny=args.tiny, memory_budget=budget)
    print(report.table())
    if args.out:
        print("wrote", ", ".join(report.write(args.out)))


if __name__ == "__main__":
    main()
