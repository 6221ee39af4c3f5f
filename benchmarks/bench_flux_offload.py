"""Flux.1 (12B, random bf16 weights) on one GPU: Inductor without offloading, diffusers group offloading
(block level, use_stream=True) and chunkflow at several resident fractions, all in one process.

    python benchmarks/bench_flux_offload.py --tokens 4096 --configs inductor,chunkflow:0,chunkflow:0.5,group

Prints a table and writes $OUT/flux_<tokens>.json. Ratios are only comparable within one run.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import build_flux, environment, flux_inputs, h2d_bandwidth, time_steps, write  # noqa: E402

import cfcompile  # noqa: E402
from cfcompile.compiler.backend import compiled_graphs  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--configs", default="inductor,chunkflow:0,chunkflow:0.5,group")
    p.add_argument("--chunk-size", default="16MiB")
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args()
    configs = args.configs.split(",")

    env = environment()
    bw = h2d_bandwidth()
    print(f"{env}  H2D {bw:.1f} GB/s", flush=True)
    model = build_flux("cuda")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    inputs = flux_inputs(args.tokens, args.text_tokens)
    results = []

    def record(name, r, **extra):
        r = dict(config=name, tokens=args.tokens, text_tokens=args.text_tokens, h2d_gbs=bw,
                 weight_gib=weight_bytes / 2**30, **env, **r, **extra)
        results.append(r)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
        write(results, f"flux_{args.tokens}.json")

    with torch.no_grad():
        if "inductor" in configs:
            fn = torch.compile(model, backend="inductor")
            record("inductor (no offload)", time_steps(lambda: fn(**inputs), iters=args.iters))
            ref = fn(**inputs)[0].float()
            del fn
            torch._dynamo.reset()
        else:
            ref = None
        gc.collect()
        torch.cuda.empty_cache()

        cf = [c for c in configs if c.startswith("chunkflow")]
        if cf:
            cfcompile.offload(model, device="cuda")
            torch.cuda.empty_cache()
            for c in cf:
                _, rf, *cs = c.split(":")  # chunkflow:<resident_fraction>[:<chunk_size>]
                rf, cs = float(rf), cs[0] if cs else args.chunk_size
                fn = torch.compile(model, backend="chunkflow", options={"resident_fraction": rf, "chunk_size": cs})
                r = time_steps(lambda: fn(**inputs), iters=args.iters)
                plan = compiled_graphs()[-1].plan
                streamed = plan.streamed_bytes
                out = fn(**inputs)[0].float()
                err = (out - ref).abs().max().item() / ref.abs().max().item() if ref is not None else None
                floor_ms = max(streamed / (bw * 1e9) * 1e3,
                               next((x["step_ms"] for x in results if x["config"].startswith("inductor")), 0.0))
                record(f"chunkflow rf={rf} chunk={cs}", r, streamed_gib=streamed / 2**30,
                       arena_gib=plan.total_arena_bytes / 2**30, resident_gib=plan.total_resident_bytes / 2**30,
                       achieved_h2d_gbs=streamed / (r["step_ms"] / 1e3) / 1e9, floor_ms=floor_ms,
                       vs_floor=r["step_ms"] / floor_ms if floor_ms else None, rel_err_vs_inductor=err)
                del fn
                torch._dynamo.reset()
                gc.collect()
                torch.cuda.empty_cache()
            cfcompile.restore(model)

        if "group" in configs:
            model.to("cpu")
            gc.collect()
            torch.cuda.empty_cache()
            model.enable_group_offload(onload_device=torch.device("cuda"), offload_type="block_level",
                                       num_blocks_per_group=1, use_stream=True)
            r = time_steps(lambda: model(**inputs), iters=args.iters)
            record("diffusers group offload (block, stream)", r,
                   achieved_h2d_gbs=weight_bytes / (r["step_ms"] / 1e3) / 1e9)


if __name__ == "__main__":
    main()
