"""A whole full-size diffusers pipeline (random weights, no download) on one GPU: seconds per image (or clip) and
peak memory for no offloading, diffusers' offloading and `cfcompile.apply` under memory budgets.

    python benchmarks/bench_pipeline.py --pipeline flux \
        --configs none,model-cpu-offload,group-offload,apply:24GiB,apply:12GiB
    python benchmarks/bench_pipeline.py --pipeline wan --steps 4 --configs none,apply:24GiB

Configs (each on a freshly built pipeline, same seed, same random weights):
  none                 the pipeline moved to the GPU (eager, no offloading)
  model-cpu-offload    diffusers' ``enable_model_cpu_offload()``: one whole component on the GPU at a time
  group-offload        diffusers' ``enable_group_offload`` at its fastest settings: block level, one block per group,
                       prefetch on a side stream (``use_stream=True, record_stream=True, non_blocking=True``)
  apply:BUDGET         ``cfcompile.apply(pipe, memory_budget=BUDGET)``: every component offloaded and compiled
  apply-cal:BUDGET     the same with ``calibrate=True``: each graph times its second call and is planned again from
                       the measured compute (its report, measured against estimated, goes in the row)
  apply-rf:F           ``cfcompile.apply(pipe, resident_fraction=F)``

Per config: ``--warmup-calls`` warm-up calls with ``--warmup-steps`` steps (the first compiles), then ``--images``
timed calls with ``--steps`` steps; the median image time, its parts (prompt encoding, denoising steps, VAE decode;
each ends in a device synchronisation) and ``max_memory_allocated`` / ``max_memory_reserved`` over the timed calls. For
``apply:``, the cost model's predictions per component and the budget's planned peak. The first config's image is the
reference: the largest difference of each later image to it is reported. Rows go to ``$OUT/pipeline_<name>.json`` as
each is measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import environment  # noqa: E402

import cfcompile  # noqa: E402
from cfcompile.full_pipelines import full_pipeline  # noqa: E402

CALLS = {
    "flux": dict(height=1024, width=1024, guidance_scale=3.5, max_sequence_length=512, steps=28),
    "wan": dict(height=480, width=832, num_frames=81, guidance_scale=5.0, max_sequence_length=512, steps=50),
}
PROMPT = "a photo of a red fox sitting in the snow, detailed fur, soft morning light"


DEVICE = "cuda"   # --tiny: "cpu" (a smoke test of this script on a machine without a GPU)


def sync() -> float:
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


class PartTimer:
    """Wall time of prompt encoding, of each denoising step and of the VAE decode, from instance-level wrappers
    around ``encode_prompt`` and ``vae.decode`` and the step-end callback (outside every compiled region)."""

    def __init__(self, pipe):
        self.pipe, self.marks = pipe, {}
        enc, dec = pipe.encode_prompt, pipe.vae.decode

        def encode_prompt(*a, **k):
            self.marks["encode_start"] = sync()
            out = enc(*a, **k)
            self.marks["encode_end"] = sync()
            self.steps = [self.marks["encode_end"]]
            return out

        def decode(*a, **k):
            self.marks["decode_start"] = sync()
            out = dec(*a, **k)
            self.marks["decode_end"] = sync()
            return out

        pipe.encode_prompt, pipe.vae.decode = encode_prompt, decode

    def on_step_end(self, pipe, i, t, kwargs):
        self.steps.append(sync())
        return {}

    def parts(self) -> dict:
        steps = [b - a for a, b in zip(self.steps, self.steps[1:])]
        m = self.marks
        return dict(encode_s=m["encode_end"] - m["encode_start"], decode_s=m["decode_end"] - m["decode_start"],
                    denoise_s=self.steps[-1] - self.steps[0], step_ms_median=statistics.median(steps) * 1e3,
                    step_ms_first=steps[0] * 1e3)


def build(name: str, tiny: bool):
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    if tiny:
        from cfcompile.tiny_pipelines import tiny_pipeline
        pipe = tiny_pipeline(name)
    else:
        torch.cuda.manual_seed(0)
        pipe = full_pipeline(name, torch.bfloat16, fill_device="cuda")
        torch.cuda.empty_cache()
    pipe.set_progress_bar_config(disable=True)
    return pipe, time.perf_counter() - t0


def setup(pipe, config: str) -> dict:
    kind, _, arg = config.partition(":")
    if kind == "none":
        pipe.to(DEVICE)
    elif kind == "model-cpu-offload":
        pipe.enable_model_cpu_offload(device=DEVICE)
    elif kind == "group-offload":
        pipe.enable_group_offload(onload_device=torch.device(DEVICE), offload_type="block_level",
                                  num_blocks_per_group=1, use_stream=True, record_stream=True, non_blocking=True)
    elif kind == "apply":
        cfcompile.apply(pipe, device=DEVICE, memory_budget=arg)
    elif kind == "apply-cal":   # the same, each graph re-planned from its second call's measured compute
        cfcompile.apply(pipe, device=DEVICE, memory_budget=arg, calibrate=True)
    elif kind == "apply-rf":
        cfcompile.apply(pipe, device=DEVICE, resident_fraction=float(arg))
    else:
        raise SystemExit(f"unknown config {config!r}: none, model-cpu-offload, group-offload, apply:BUDGET, "
                         f"apply-cal:BUDGET, apply-rf:F")
    return {}


def served() -> dict[int, tuple[int, int, float]]:
    """(calls, streamed bytes, predicted ms) so far of every live chunkflow graph, by graph."""
    return {id(info.state): (*info.served, info.predicted_ms_served) for info in cfcompile.compiled_graphs()}


def predictions(pipe, before: dict, images: int) -> dict:
    """The cost model's view of the applied pipeline: per graph its component, predicted call time and peak, and its
    calls per timed image (``before``: `served` before the timed images); per component the predicted milliseconds
    per image (calls x predicted call time), to set against the measured parts."""
    from cfcompile.offload import store_of

    record = getattr(pipe, "_cfcompile_applied", None)
    if record is None:
        return {}
    stores = {p.name: store_of(p.module) for p in record.parts}
    graphs, per_component = [], {}
    for info in cfcompile.compiled_graphs():
        p = info.prediction
        if p is None:
            continue
        component = next((name for name, st in stores.items() if st is not None and info.reads_from(st)), None)
        calls0, bytes0, ms0 = before.get(id(info.state), (0, 0, 0.0))
        calls, nbytes = info.served
        # each call priced by the plan of the variant that ran it (lean variants stream whole blocks)
        ms = (info.predicted_ms_served - ms0) / images
        calls, nbytes = (calls - calls0) / images, (nbytes - bytes0) / images
        graphs.append(dict(component=component, step_ms=p.step_ms, compute_ms=p.compute_ms, copy_ms=p.copy_ms,
                           stall_ms=p.stall_ms, peak_bytes=p.peak_bytes, resident_bytes=p.resident_bytes,
                           streamed_bytes=info.plan.streamed_bytes, groups=len(info.plan.groups),
                           lean_step_ms=info.state.lean.prediction.step_ms if info.state.lean else None,
                           calls_per_image=calls, streamed_bytes_per_image=nbytes, predicted_ms_per_image=ms,
                           compiles=info.compiles, compiles_saved=info.compiles_saved, calibration=info.calibration))
        per_component[component] = per_component.get(component, 0.0) + ms
    usage = record.budget.usage() if record.budget is not None else {}
    return dict(summary=record.summary(), graphs=graphs, predicted_ms_per_image=per_component,
                budget_planned_peak_gib=usage.get("peak_bytes", 0) / 2**30 if usage else None)


def run_config(args, config: str, ref: torch.Tensor | None) -> tuple[dict, torch.Tensor]:
    pipe, build_s = build(args.pipeline, args.tiny)
    row = dict(config=config, pipeline=args.pipeline, build_s=round(build_s, 1))
    t0 = time.perf_counter()
    setup(pipe, config)
    row["setup_s"] = round(time.perf_counter() - t0, 1)
    call = dict(CALLS[args.pipeline])
    call.pop("steps")
    if args.tiny:
        from cfcompile.tiny_pipelines import TINY_CALLS
        call = {k: v for k, v in TINY_CALLS[args.pipeline].items() if k != "num_inference_steps"}
    timer = PartTimer(pipe)

    def generate(steps: int):
        g = torch.Generator().manual_seed(0)
        out = pipe(prompt=PROMPT, generator=g, num_inference_steps=steps, output_type="pt",
                   callback_on_step_end=timer.on_step_end, **call)
        return (out.frames if hasattr(out, "frames") else out.images)

    with torch.no_grad():
        warmups = []
        for _ in range(args.warmup_calls):   # the first compiles; a second catches anything done on a later call
            t0 = sync()
            generate(args.warmup_steps)
            warmups.append(round(sync() - t0, 1))
        row["warmup_s"] = warmups
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
        before = served()
        times, parts = [], []
        for _ in range(args.images):
            t0 = sync()
            image = generate(args.steps)
            times.append(sync() - t0)
            parts.append(timer.parts())
    i = times.index(statistics.median(times)) if len(times) % 2 else 0
    row.update(steps=args.steps, image_s=statistics.median(times), image_s_all=[round(t, 2) for t in times],
               **parts[i])
    if DEVICE == "cuda":
        row.update(peak_alloc_gib=torch.cuda.max_memory_allocated() / 2**30,
                   peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
    image = image.float().cpu()
    row["finite"] = bool(torch.isfinite(image).all())
    if ref is not None:
        row["max_diff_to_first"] = (image - ref).abs().max().item()
    row["cfcompile"] = predictions(pipe, before, args.images)
    teardown(pipe)
    return row, image


def teardown(pipe) -> None:
    if getattr(pipe, "_cfcompile_applied", None) is not None:
        cfcompile.restore(pipe)
    try:
        pipe.remove_all_hooks()
    except Exception:   # noqa: BLE001 - only some configs add hooks
        pass
    del pipe
    torch._dynamo.reset()
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", choices=sorted(CALLS), default="flux")
    ap.add_argument("--configs", default="none,model-cpu-offload,group-offload,apply:24GiB,apply:12GiB")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps of a timed call (default: the "
                    "pipeline's usual: flux 28, wan 50)")
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--warmup-calls", type=int, default=2)
    ap.add_argument("--images", type=int, default=1, help="timed calls per config (median)")
    ap.add_argument("--tiny", action="store_true", help="the tiny pipeline on the CPU: a smoke test of this script")
    args = ap.parse_args()
    global DEVICE
    DEVICE = "cpu" if args.tiny else "cuda"
    args.steps = args.steps or CALLS[args.pipeline]["steps"]
    out = os.path.join(os.environ.get("OUT", "."), f"pipeline_{args.pipeline}.json")
    env = environment() if DEVICE == "cuda" else dict(device="cpu", torch=torch.__version__)
    result = dict(env, pipeline=args.pipeline, call={**CALLS[args.pipeline], "steps": args.steps},
                  command=" ".join(sys.argv), rows=[])
    ref, ok = None, True
    for config in args.configs.split(","):
        try:
            row, image = run_config(args, config, ref)
            ref = image if ref is None else ref
        except Exception as e:   # noqa: BLE001 - record the failure and go on with the next config
            traceback.print_exc()
            row, ok = dict(config=config, error=f"{type(e).__name__}: {e}"[:2000]), False
        result["rows"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "cfcompile"}), flush=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
