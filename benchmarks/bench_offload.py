"""Any preset or held-out DiT (random weights) on one GPU: Inductor without offloading, chunkflow at several resident
fractions, chunk sizes and memory budgets, and diffusers group offloading (block level, use_stream=True), all in one
process, timed with common.time_steps and common.h2d_bandwidth (bench_flux_offload.py, the Flux-only version
retired at fc29824, is ``--model flux``).

    python benchmarks/bench_offload.py --model wan --height 480 --width 832 --frames 81 \\
        --configs inductor,chunkflow:0,chunkflow:0.5:64MiB,budget:24GiB,group
    python benchmarks/bench_offload.py --model flux --tiny --device cpu --configs inductor,chunkflow:0.5 --iters 2

Each config compiles in a fresh Inductor cache after one warm-up compile (``--keep-cache``: shared), so that
compile times compare across configs. Configs: ``inductor``; ``chunkflow:<resident_fraction>[:<chunk_size>]``; ``budget:<bytes>`` (chunkflow with
``memory_budget``); ``regional:<resident_fraction>`` and ``regional-budget:<bytes>`` (the same through diffusers'
regional compilation, ``model.compile_repeated_blocks(backend=chunkflow, options=...)``: one graph per block class);
``group``. Chunkflow rows also carry the backend's prediction (``predicted_step_ms``,
``predicted_peak_gib``) when the compiled graph has one. Writes $OUT/<model>_<tokens>.json after every row
(``--tiny``: <model>-tiny_<tokens>.json, so smoke tests never overwrite real results). A config that fails is
recorded with its error and the others still run; the exit status is 1 then. Ratios are only comparable within one
run. ``--device cpu`` (with ``--tiny``) times with perf_counter and makes no CUDA calls; memory columns are None.
``--model`` takes the held-out DiTs of heldout.py too (the cost model was not developed on them; its docstring has
their GPU commands).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, h2d_bandwidth, time_steps, write  # noqa: E402
from heldout import HELDOUT, get_model  # noqa: E402

import cfcompile  # noqa: E402
from cfcompile.compiler.backend import chunkflow as chunkflow_backend, compiled_graphs  # noqa: E402
from cfcompile.presets import PRESETS, Workload  # noqa: E402

# Per-model default workloads: the pipelines' usual sizes (Wan 2.1: 480p, 81 frames), and small ones for --tiny.
_DEFAULTS = {"wan": dict(height=480, width=832, frames=81),
             "hunyuan-video": dict(height=544, width=960, frames=61),   # 540p; heldout.py says why not 129 frames
             "cogvideox-5b": dict(height=480, width=720, frames=49)}
_TINY_DEFAULTS = dict(height=128, width=128)
_TINY_FRAMES = {"wan": 5, "hunyuan-video": 5, "cogvideox-5b": 5}


def parse_configs(spec: str, device: str, chunk_size: str) -> list[tuple[str, str, dict | None]]:
    """``"inductor,chunkflow:0.5:64MiB,budget:24GiB,group"`` -> ``[(kind, label, chunkflow options), ...]``, all
    checked before the model is built (a typo should not cost a 40 GiB model build)."""
    out = []
    for c in filter(None, spec.split(",")):
        kind, *args = c.split(":")
        if kind == "inductor" and not args:
            out.append(("inductor", "inductor (no offload)", None))
        elif kind == "chunkflow" and 1 <= len(args) <= 2:
            try:
                rf = float(args[0])
            except ValueError:
                raise SystemExit(f"--configs {c}: the resident fraction {args[0]!r} is not a number") from None
            cs = args[1] if len(args) == 2 else chunk_size
            out.append(("chunkflow", f"chunkflow rf={rf} chunk={cs}", {"resident_fraction": rf, "chunk_size": cs}))
        elif kind == "budget" and len(args) == 1:
            out.append(("chunkflow", f"chunkflow budget={args[0]}", {"memory_budget": args[0]}))
        elif kind == "regional" and len(args) == 1:
            out.append(("chunkflow", f"regional rf={float(args[0])} chunk={chunk_size}",
                        {"resident_fraction": float(args[0]), "chunk_size": chunk_size, "regional": True}))
        elif kind == "regional-budget" and len(args) == 1:
            out.append(("chunkflow", f"regional budget={args[0]}", {"memory_budget": args[0], "regional": True}))
        elif kind == "group" and not args:
            if device != "cuda":
                raise SystemExit("--configs group: diffusers group offloading needs --device cuda")
            out.append(("group", "diffusers group offload (block, stream)", None))
        else:
            raise SystemExit(f"--configs: cannot parse {c!r}; use inductor, chunkflow:<resident_fraction>"
                             f"[:<chunk_size>], budget:<bytes> or group")
    return out


def time_steps_cpu(fn, warmup: int = 3, iters: int = 10) -> dict:
    """common.time_steps without CUDA: perf_counter per call, no memory columns."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    return dict(step_ms=med, min_ms=min(times), max_ms=max(times), first_call_s=first,
                compile_s=max(first - med / 1e3, 0.0), peak_alloc_gib=None, peak_reserved_gib=None)


def fresh_cache():
    """A new, empty Inductor and Triton cache (disk and memory) for one config: a config compiled after another
    would otherwise reuse the kernels they share, and its compile time would look shorter."""
    from torch._inductor import utils
    return getattr(utils, "fresh_cache", None) or utils.fresh_inductor_cache


def warm_up_compiler(device: torch.device, dtype: torch.dtype) -> None:
    """Pay once what the first compile of a process pays (imports, Inductor's worker pool, Triton's and the
    driver's start), so that it is not charged to the first config."""
    f = torch.compile(lambda x, w: torch.nn.functional.gelu(x @ w).sum(), backend="inductor")
    with fresh_cache()():
        f(torch.randn(64, 64, device=device, dtype=dtype), torch.randn(64, 64, device=device, dtype=dtype))
    torch._dynamo.reset()


def environment_cpu() -> dict:
    return dict(date=time.strftime("%Y-%m-%d"), device=f"cpu ({platform.processor() or platform.machine()})",
                torch=torch.__version__, cuda=None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=[*PRESETS, *HELDOUT], default="flux",
                   help=f"a preset ({', '.join(PRESETS)}) or a held-out DiT the cost model was not developed on "
                        f"({', '.join(HELDOUT)}; benchmarks/heldout.py)")
    p.add_argument("--height", type=int, help="pixels (default 1024; wan 480; hunyuan-video 544; cogvideox-5b 480; "
                   "--tiny 128)")
    p.add_argument("--width", type=int, help="pixels (default 1024; wan 832; hunyuan-video 960; cogvideox-5b 720; "
                   "--tiny 128)")
    p.add_argument("--frames", type=int, help="video frames, 4k+1 (default 1; wan 81; hunyuan-video 61; "
                   "cogvideox-5b 49; video models --tiny 5)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--text-tokens", type=int, help="default: the preset's (the pipeline's max_sequence_length)")
    p.add_argument("--configs", default="inductor,chunkflow:0,chunkflow:0.5,group")
    p.add_argument("--chunk-size", help="for chunkflow:<rf> without a chunk size (default 16MiB; --tiny 8KiB)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--tiny", action="store_true", help="the preset's tiny config (CPU smoke test)")
    p.add_argument("--keep-cache", action="store_true", help="let configs share Inductor's caches (default: each "
                   "compiles in a fresh one, after a warm-up compile, so that compile times compare)")
    args = p.parse_args()

    preset = get_model(args.model)
    defaults = {**_TINY_DEFAULTS, "frames": _TINY_FRAMES.get(args.model, 1)} if args.tiny \
        else _DEFAULTS.get(args.model, {})
    size = {k: getattr(args, k) if getattr(args, k) is not None else defaults.get(k, d)
            for k, d in (("height", 1024), ("width", 1024), ("frames", 1))}
    try:
        workload = Workload(**size, batch=args.batch, text_tokens=args.text_tokens)
        tokens = preset.tokens(workload)
    except ValueError as e:
        raise SystemExit(f"{args.model}: {e}") from None
    chunk_size = args.chunk_size or ("8KiB" if args.tiny else "16MiB")  # tiny: several chunks per block
    configs = parse_configs(args.configs, args.device, chunk_size)

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU here; use --device cpu --tiny for a smoke test")
    device, dtype = torch.device(args.device), (torch.bfloat16 if cuda else torch.float32)
    timer = time_steps if cuda else time_steps_cpu
    env = environment() if cuda else environment_cpu()
    bw = h2d_bandwidth() if cuda else None
    print(f"{env}  H2D {f'{bw:.1f} GB/s' if bw else 'n/a'}", flush=True)

    if not args.keep_cache:
        warm_up_compiler(device, dtype)
    model = preset.build(device, dtype, tiny=args.tiny)
    weight_bytes = sum(t.numel() * t.element_size() for t in model.parameters())
    inputs = preset.inputs(model.config, workload, device, dtype)
    text_tokens = preset.text_tokens(workload)
    name = f"{args.model}{'-tiny' if args.tiny else ''}_{tokens}.json"
    print(f"{args.model}{' (tiny)' if args.tiny else ''}: {weight_bytes / 2**30:.2f} GiB of weights ({dtype}), "
          f"{workload}, {tokens} image tokens + {text_tokens} text tokens; writing {name}", flush=True)
    results, ref, inductor_ms = [], None, None

    def record(label, r, **extra):
        r = dict(config=label, model=args.model, tiny=args.tiny, tokens=tokens, text_tokens=text_tokens,
                 height=workload.height, width=workload.width, frames=workload.frames, batch=workload.batch,
                 h2d_gbs=bw, weight_gib=weight_bytes / 2**30, **env, **r, **extra)
        results.append(r)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
        write(results, name)

    def cleanup():
        torch._dynamo.reset()
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    def run_chunkflow(label, options):
        before = compiled_graphs()  # strong references: graphs compiled earlier stay distinguishable
        # device memory held before this config (an earlier graph's arena still alive would show here)
        allocated_before = torch.cuda.memory_allocated() / 2**30 if cuda else None
        # The backend function itself: works from a source checkout too (the "chunkflow" name needs pip install).
        options = dict(options)
        if options.pop("regional", False):   # diffusers' regional compilation: blocks compiled, the rest eager
            model.compile_repeated_blocks(backend=chunkflow_backend, options=options)
            fn = model
        else:
            fn = torch.compile(model, backend=chunkflow_backend, options=options)
        try:
            r = timer(lambda: fn(**inputs), iters=args.iters)
            new = [g for g in compiled_graphs() if not any(g is b for b in before)]
            out = fn(**inputs)[0].float()
        finally:
            for m in model.modules():
                m._compiled_call_impl = None
        g = new[-1]
        plan, pred = g.plan, getattr(g, "chunkflow_prediction", None)
        # a graph serving n blocks streams its plan n times per call of the model
        calls = {id(gr): len({k[0] for k in gr.runtime.bound}) or 1 for gr in new}
        streamed = sum(gr.plan.streamed_bytes * calls[id(gr)] for gr in new)
        err = (out - ref).abs().max().item() / ref.abs().max().item() if ref is not None else None
        floors = [x for x in (inductor_ms, streamed / (bw * 1e9) * 1e3 if bw else None) if x is not None]
        floor_ms = max(floors) if floors else None
        record(label, r, graphs=len(new), allocated_before_gib=allocated_before, streamed_gib=streamed / 2**30, arena_gib=plan.total_arena_bytes / 2**30,
               resident_gib=plan.total_resident_bytes / 2**30,
               achieved_h2d_gbs=streamed / (r["step_ms"] / 1e3) / 1e9 if cuda else None, floor_ms=floor_ms,
               vs_floor=r["step_ms"] / floor_ms if floor_ms else None, rel_err_vs_inductor=err,
               predicted_step_ms=getattr(pred, "step_ms", None), bindings=[calls[id(gr)] for gr in new],
               predicted_peak_gib=peak / 2**30 if (peak := getattr(pred, "peak_bytes", None)) is not None else None)

    def attempt(label, fn):
        try:
            with fresh_cache()() if not args.keep_cache else contextlib.nullcontext():
                fn()
            return True
        except Exception as e:  # noqa: BLE001 - one failing config must not lose the other rows
            traceback.print_exc()
            record(label, {}, error=f"{type(e).__name__}: {e}")
            return False
        finally:
            cleanup()

    def run_inductor(label):
        nonlocal inductor_ms, ref
        fn = torch.compile(model, backend="inductor")
        r = timer(lambda: fn(**inputs), iters=args.iters)
        record(label, r)
        inductor_ms, ref = r["step_ms"], fn(**inputs)[0].float()

    def run_group(label):
        model.to("cpu")
        cleanup()
        model.enable_group_offload(onload_device=device, offload_type="block_level", num_blocks_per_group=1,
                                   use_stream=True)
        r = timer(lambda: model(**inputs), iters=args.iters)
        record(label, r, achieved_h2d_gbs=weight_bytes / (r["step_ms"] / 1e3) / 1e9)

    # Phases in a fixed order: Inductor (model resident; its output is the reference), then
    # chunkflow (offloaded once, restored after), then group offloading (moves the model for good).
    ok = True
    with torch.no_grad():
        for kind, label, _ in configs:
            if kind == "inductor":
                ok &= attempt(label, lambda: run_inductor(label))
        chunkflow = [(label, options) for kind, label, options in configs if kind == "chunkflow"]
        if chunkflow:
            cfcompile.offload(model, device=device)
            cleanup()
            for label, options in chunkflow:
                ok &= attempt(label, lambda: run_chunkflow(label, options))
            cfcompile.restore(model)
            cleanup()
        for kind, label, _ in configs:
            if kind == "group":
                ok &= attempt(label, lambda: run_group(label))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
