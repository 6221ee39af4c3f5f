"""The ``cfcompile`` command: try, plan and simulate the chunkflow backend.

    cfcompile demo                       # reduced Flux, random weights, on the GPU if there is one, else the CPU
    cfcompile demo --model flux          # the full-size Flux.1 transformer (12B, bf16; needs a GPU)
    cfcompile plan --model flux --height 1024 --width 1024 --profile H100 --memory-budget 12GiB --out plan/
                                         # the plan and predicted timeline, without a GPU or the weights
    cfcompile workload --mix gfdit --gpus 8 --profile H100 --out w.jsonl
    cfcompile simulate w.jsonl --profile H100 --gpu-memory 80x4,24x4 --policy edf --policy memory-aware --out sim/
    cfcompile costs --profile H100 --out costs.json      # the cost table, predicted by plan_model (no GPU)
    cfcompile generate --pipeline flux --prompt "a red fox in the snow" --memory-budget 16GiB --out fox.png
                                         # a whole pipeline (local folder or hub cache) under a device-memory budget
    cfcompile generate --pipeline wan --tiny --out clip.mp4   # tiny random weights: the CPU, seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from tabulate import tabulate

from .config import format_bytes

# A reduced Flux.1: same block types and dataflow, a few blocks, small widths (compiles in seconds on a CPU).
SMALL_FLUX = dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=4, attention_head_dim=32,
                  num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=True,
                  axes_dims_rope=(8, 12, 12))

# The same, with one block of each kind: the demo's output in half the compile time (the CLI's tests).
TINY_FLUX = dict(SMALL_FLUX, num_layers=1, num_single_layers=1)


def _flux_inputs(config, image_tokens: int, text_tokens: int, device, dtype) -> dict:
    g = torch.Generator().manual_seed(0)
    side = int(image_tokens ** 0.5)
    ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(side).float(),
                                     torch.arange(image_tokens // side).float(), indexing="ij"), -1).reshape(-1, 3)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    return dict(hidden_states=rand(1, image_tokens, config.in_channels),
                encoder_hidden_states=rand(1, text_tokens, config.joint_attention_dim),
                pooled_projections=rand(1, config.pooled_projection_dim),
                timestep=torch.tensor([0.5], device=device, dtype=dtype), img_ids=ids.to(device, dtype),
                txt_ids=torch.zeros(text_tokens, 3, device=device, dtype=dtype),
                guidance=torch.tensor([3.5], device=device, dtype=dtype), return_dict=False)


def _timed(fn, steps: int, device: torch.device) -> tuple[torch.Tensor, float]:
    times, out = [], None
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times) * 1e3


def _check_device(spec: str) -> str | None:
    """None if tensors can be made on ``spec``, else one line: what is wrong and what to do."""
    try:
        device = torch.device(spec)
    except RuntimeError:  # "gpu", "cuda:x", ...
        return f"--device {spec!r} is not a device name torch knows; use cuda, cuda:N or cpu"
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch ({torch.__version__}) is built without CUDA; install a CUDA build of torch"
                   if torch.version.cuda is None
                   else "no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
            return f"--device {spec} is not available: {why}, or use --device cpu"
        n = torch.cuda.device_count()
        if device.index is not None and device.index >= n:
            return (f"--device {spec} is not available: {n} CUDA GPU(s) visible; use cuda:0 .. cuda:{n - 1}, "
                    "or --device cpu")
        return None
    try:
        torch.empty(1, device=device)
    except Exception:  # mps, xpu, ... without the hardware or the build; torch's message runs to pages
        return (f"--device {spec} is not available with this torch ({torch.__version__}) on this machine; "
                f"use --device cpu, or cuda on a machine with a GPU")
    return None


def demo(args: argparse.Namespace) -> int:
    try:
        from diffusers import FluxTransformer2DModel
    except ImportError:
        print("cfcompile demo needs diffusers: pip install 'cfcompile[diffusers]'", file=sys.stderr)
        return 2
    import cfcompile

    if args.device and (problem := _check_device(args.device)):
        print(f"cfcompile demo: {problem}", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    full = args.model == "flux"
    if full and device.type != "cuda":
        print("--model flux is the 12B Flux.1 transformer: it needs a GPU; use --model small on the CPU",
              file=sys.stderr)
        return 2
    out_dir = Path(args.out).resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"cfcompile demo: cannot write to --out {args.out}: {e.strerror}; give another directory",
              file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    image_tokens, text_tokens = (args.tokens or (4096 if full else 256)), (512 if full else 32)
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device if full else "cpu"):
            model = (FluxTransformer2DModel(guidance_embeds=True) if full else
                     FluxTransformer2DModel(**(TINY_FLUX if args.model == "tiny" else SMALL_FLUX)))
    finally:
        torch.set_default_dtype(old)
    model = model.eval().requires_grad_(False).to(device)
    inputs = _flux_inputs(model.config, image_tokens, text_tokens, device, dtype)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"Flux {'full size' if full else 'reduced'}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"parameters ({format_bytes(weight_bytes)}, {dtype}) on {device}; {image_tokens} image + {text_tokens} text "
          f"tokens", flush=True)

    with torch.no_grad():
        t0 = time.perf_counter()
        reference = torch.compile(model, backend="inductor")
        ref, ref_ms = _timed(lambda: reference(**inputs), args.steps, device)
        print(f"compiled without offloading in {time.perf_counter() - t0:.1f} s", flush=True)
        del reference
        torch._dynamo.reset()

        store = cfcompile.offload(model, device=device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        options = {"resident_fraction": args.resident_fraction, "dump": str(out_dir)}
        if args.chunk_size:
            options["chunk_size"] = args.chunk_size
        elif not full:
            options["chunk_size"] = "64KiB"  # several chunks per block at this toy size
        t0 = time.perf_counter()
        fast = torch.compile(model, backend="chunkflow", options=options)
        out, step_ms = _timed(lambda: fast(**inputs), args.steps + 1, device)
        compile_s = time.perf_counter() - t0
        from .compiler.backend import compiled_graphs

        plan = compiled_graphs()[-1].plan
        peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None

    tol = dict(atol=3e-2, rtol=3e-2) if dtype == torch.bfloat16 else dict(atol=1e-4, rtol=1e-4)
    err = (out.float() - ref.float()).abs().max().item()
    ok = torch.allclose(out.float(), ref.float(), **tol)
    rows = [
        ("output vs. Inductor without offloading", f"max abs diff {err:.3g} ({'OK' if ok else 'MISMATCH'})"),
        ("step time, chunkflow (median)", f"{step_ms:.1f} ms"),
        ("step time, Inductor without offloading", f"{ref_ms:.1f} ms"),
        ("compile + first steps", f"{compile_s:.1f} s"),
        ("peak device memory", format_bytes(peak) if peak is not None else "n/a on the CPU"),
        ("weights in host memory", f"{format_bytes(store.host_bytes)} ({format_bytes(store.pinned_bytes)} pinned)"),
        ("chunks (resident)", f"{len(plan.chunks)} ({sum(c.resident for c in plan.chunks)}) of "
                              f"{format_bytes(plan.chunk_size)}"),
        ("streamed per step", format_bytes(plan.streamed_bytes)),
        ("arena on the device", format_bytes(plan.total_arena_bytes)),
        ("resident on the device", format_bytes(plan.total_resident_bytes)),
    ]
    print(tabulate(rows, headers=("measure", "value"), tablefmt="simple"))
    print(f"files (plan.json, schedule.txt, timeline.json / .png): {compiled_graphs()[-1].dump_dir}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="cfcompile", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="cfcompile streams a DiT's weights from pinned host memory in chunks (torch.compile backend\n"
                    "\"chunkflow\"). These commands try it on a small model, plan a model for a GPU, and simulate "
                    "serving.",
        epilog="examples:\n" + "\n".join(line[2:] for line in __doc__.splitlines()[2:] if line.strip())
               + '\n\n"cfcompile COMMAND --help" lists the options of a command.')
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    d = sub.add_parser("demo", help="offload and compile a Flux-architecture DiT with random weights, check its output "
                                    "against Inductor without offloading, report step time, memory and the plan",
                       description="Offload and compile a Flux-architecture DiT with random weights, check its output "
                                   "against Inductor without offloading, and report step time, memory and the plan.")
    d.add_argument("--model", choices=("tiny", "small", "flux"), default="small",
                   help="small: a reduced Flux with random weights (CPU friendly); tiny: fewer blocks (compiles in "
                        "half the time); flux: full-size Flux.1 (GPU)")
    d.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    d.add_argument("--resident-fraction", type=float, default=0.25)
    d.add_argument("--chunk-size", help="e.g. 16MiB (default: 64KiB for small, 16MiB for flux)")
    d.add_argument("--tokens", type=int, help="image tokens (default 256 small, 4096 flux)")
    d.add_argument("--steps", type=int, default=3)
    d.add_argument("--out", "--dump", default="cfcompile-demo",
                   help="directory for the plan, schedule and timeline of the compiled graph (default: "
                        "./cfcompile-demo; each run adds a graph_NNN folder)")
    q = sub.add_parser("plan", help="plan a preset model (flux, qwen-image, wan, sd3) for a GPU profile without the "
                                    "GPU or the weights: per-block table, predicted step and peak memory, timeline",
                       description="Plan a preset model for a GPU profile on the meta device (no GPU, no weights): "
                                   "per-block table, predicted step time and peak memory; --out writes the plan "
                                   "and the predicted timeline.")
    q.add_argument("--model", required=True, help="preset: flux, qwen-image, wan, sd3")
    q.add_argument("--height", type=int, default=1024)
    q.add_argument("--width", type=int, default=1024)
    q.add_argument("--frames", type=int, default=1, help="video frames (4k+1 for wan)")
    q.add_argument("--batch", type=int, default=1)
    q.add_argument("--text-tokens", type=int, help="default: the pipeline's")
    q.add_argument("--sp-degree", type=int, default=1, help="Ulysses sequence-parallel degree (per-rank plan)")
    q.add_argument("--profile", default="H100", help="built-in profile name or a JSON file (default H100)")
    q.add_argument("--memory-budget", help="e.g. 12GiB: tune chunk size, residency and issue points within it")
    q.add_argument("--resident-fraction", type=float)
    q.add_argument("--chunk-size", help="e.g. 16MiB (default: auto)")
    q.add_argument("--prefetch-depth", help="an int or auto (default)")
    q.add_argument("--tiny", action="store_true", help="the preset's tiny config (seconds; to try the tool)")
    q.add_argument("--out", help="directory for plan.json, prediction.json, timeline.json (Perfetto), timeline.png")
    from .elastic.serving.commands import (SIMULATE_DESCRIPTION, WORKLOAD_DESCRIPTION, add_simulate_arguments,
                                           add_workload_arguments)

    add_workload_arguments(sub.add_parser(
        "workload", help="generate a serving workload for simulate (JSON lines, one request a line)",
        description=WORKLOAD_DESCRIPTION))
    add_simulate_arguments(sub.add_parser(
        "simulate", help="simulate serving a workload on a GPU pool under one or more scheduling policies: one "
                         "comparison table, a summary and trace per policy", description=SIMULATE_DESCRIPTION))
    c = sub.add_parser("costs", help="predict a serving cost table with plan_model (no GPU): stage times per model, "
                                     "token count and SP degree, with the source of every row",
                       description="Predict the serving cost table of a GPU profile with plan_model (no GPU): "
                                   "denoise per shape and SP degree, fitted a*x^2+b*x+c; text encode and VAE decode "
                                   "estimated; every row says where it came from. Full size takes about a minute "
                                   "per shape on a CPU; the H100 and H200 tables ship with cfcompile.")
    c.add_argument("--profile", default="H100", help="built-in profile (H100, H200, ...) or a profile JSON")
    c.add_argument("--models", default="flux,qwen-image,wan", help="comma-separated presets")
    c.add_argument("--degrees", default="1,2,4,8", help="SP degrees, comma-separated, including 1")
    c.add_argument("--tiny", action="store_true", help="the presets' tiny configs (seconds; to try the tool)")
    c.add_argument("--out", required=True, help="JSON file to write")
    g = sub.add_parser("generate", help="generate an image or video with a whole diffusers pipeline (Flux, "
                                        "Qwen-Image, Wan) offloaded and compiled under a device-memory budget",
                       description="Generate an image or a video with a diffusers pipeline whose components are "
                                   "offloaded to host memory and compiled with chunkflow (cfcompile.apply), under "
                                   "one device-memory budget. The pipeline loads from a local folder or the hub "
                                   "cache (nothing is downloaded); --tiny and --random-weights need neither. Prints "
                                   "a progress bar over the denoising steps and a summary line: seconds, peak "
                                   "device memory, bytes streamed per step.")
    from .pipelines import CALLS, REPOS

    g.add_argument("--pipeline", choices=tuple(REPOS),
                   help="; ".join(f"{k}: {v}" for k, v in REPOS.items()) + " (the default repository of --model; "
                        "default flux)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="PATH_OR_REPO",
                     help="a local pipeline folder, or a hub repository id in the hub cache (default: --pipeline's)")
    src.add_argument("--tiny", action="store_true",
                     help="the tiny random-weight pipeline (cfcompile.tiny_pipelines; the CPU, seconds; its small "
                          "sizes and steps are the defaults)")
    src.add_argument("--random-weights", action="store_true",
                     help="the full-size pipeline built from its released config with random weights, no download "
                          "(flux and wan: cfcompile.full_pipelines)")
    g.add_argument("--prompt", default="a photo of a cat")
    sizes = ", ".join(f"{k} {c['height']}x{c['width']}" + (f"x{c['num_frames']}" if "num_frames" in c else "")
                      + f" {c['num_inference_steps']} steps" for k, c in CALLS.items())
    g.add_argument("--height", type=int, help=f"default: the pipeline's ({sizes})")
    g.add_argument("--width", type=int)
    g.add_argument("--frames", type=int, help="video frames (4k+1 for Wan)")
    g.add_argument("--steps", type=int, help="denoising steps")
    g.add_argument("--guidance", type=float, help="guidance scale (Qwen-Image: true CFG scale)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    g.add_argument("--dtype", choices=tuple(_DTYPES), help="default: bf16 on cuda, fp32 on the CPU")
    g.add_argument("--memory-budget", help="device memory for all components together, e.g. 16GiB")
    g.add_argument("--resident-fraction", type=float)
    g.add_argument("--eager", action="append", default=[], metavar="COMPONENT",
                   help="offload this component but do not compile it (e.g. vae); repeatable")
    g.add_argument("--check", action="store_true",
                   help="also run the plain pipeline first (same seed, on the device: it must fit there whole) and "
                        "compare the outputs; exit 1 if they differ")
    g.add_argument("--out", required=True,
                   help="image: .png or .jpg; video: .mp4 (a .gif instead if imageio-ffmpeg is missing) or .gif")
    # parse_args reports options no parser knows with the top-level usage; the subcommand's usage says more
    args, extra = p.parse_known_args(argv)
    if extra:
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "demo":
        return demo(args)
    if args.command == "plan":
        return plan(args)
    if args.command == "workload":
        return workload(args)
    if args.command == "simulate":
        return simulate(args)
    if args.command == "costs":
        return costs(args)
    if args.command == "generate":
        return generate(args, sub.choices["generate"])
    return 2


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_IMAGE, _VIDEO = (".png", ".jpg", ".jpeg"), (".mp4", ".gif")


def generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Load, apply, generate, write; errors in what was asked for go through ``parser.error`` (exit 2)."""
    import numpy as np

    import cfcompile

    from .config import parse_bytes
    from .offload import store_of
    from .pipelines import REPOS, VIDEO, call_arguments, load_pipeline, save_output

    if args.model is None and args.pipeline is None:
        args.pipeline = "flux"
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in _IMAGE + _VIDEO:
        parser.error(f"--out {args.out}: write an image (.png, .jpg) or a video (.mp4, .gif)")
    if args.pipeline is not None and (args.pipeline in VIDEO) != (suffix in _VIDEO):
        kind = "a video" if args.pipeline in VIDEO else "an image"
        parser.error(f"--out {args.out}: --pipeline {args.pipeline} makes {kind}; name a "
                     f"{'.mp4 or .gif' if args.pipeline in VIDEO else '.png or .jpg'} file")
    if args.device and (problem := _check_device(args.device)):
        parser.error(problem)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = _DTYPES[args.dtype] if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    options = {}
    try:
        if args.memory_budget is not None:
            options["memory_budget"] = parse_bytes(args.memory_budget, key="--memory-budget")
    except ValueError as e:
        parser.error(str(e))
    if args.resident_fraction is not None:
        options["resident_fraction"] = args.resident_fraction

    t0 = time.perf_counter()
    try:
        if args.random_weights:
            from .full_pipelines import full_pipeline

            name = args.pipeline
            pipe = full_pipeline(name, dtype, fill_device=device if device.type == "cuda" else None)
            if name in VIDEO:
                pipe.vae.to(torch.float32)   # as load_pipeline keeps Wan's VAE
        else:
            pipe, name = load_pipeline(args.pipeline, args.model, dtype=dtype, tiny=args.tiny)
    except ImportError as e:
        parser.error(f"{e}" if not args.random_weights else
                     f"--random-weights needs cfcompile.full_pipelines, which this cfcompile does not have ({e})")
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    if (name in VIDEO) != (suffix in _VIDEO):
        parser.error(f"--out {args.out}: {args.model} is a {name} pipeline, which makes "
                     f"{'a video' if name in VIDEO else 'an image'}")
    call = call_arguments(name, tiny=args.tiny, height=args.height, width=args.width, frames=args.frames,
                          steps=args.steps, guidance=args.guidance)
    steps = call["num_inference_steps"]
    source = args.model or ("tiny, random weights" if args.tiny else "random weights" if args.random_weights
                            else REPOS[name])
    print(f"{name} ({source}), {dtype} on {device}, loaded in {time.perf_counter() - t0:.1f} s; "
          f"{call['height']}x{call['width']}"
          f"{' x ' + str(call['num_frames']) + ' frames' if 'num_frames' in call else ''}, {steps} steps", flush=True)

    def run(desc: str):
        pipe.set_progress_bar_config(disable=False, desc=desc, leave=True)
        ends: list[float] = []

        def at_step_end(pipe_, i, t, kwargs):
            ends.append(time.perf_counter())
            return {}

        begin = time.perf_counter()
        with torch.no_grad():
            result = pipe(prompt=args.prompt, generator=torch.Generator().manual_seed(args.seed), output_type="np",
                          callback_on_step_end=at_step_end, **call)
        return (result.frames if name in VIDEO else result.images)[0], time.perf_counter() - begin, ends

    plain = None
    if args.check:   # the plain pipeline on the device: it must fit there whole
        pipe.to(device)
        plain = run("plain pipeline")[0]
        pipe.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    try:
        cfcompile.apply(pipe, device=device, eager=args.eager, **options)
    except ValueError as e:
        parser.error(str(e))
    print("components:", ", ".join(f"{k} ({v})" for k, v in pipe._cfcompile_applied.summary().items()), flush=True)
    dits = [store_of(m) for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None))
            if m is not None]
    before = _streamed(dits)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        result, seconds, ends = run("denoising (chunkflow)")
    except Exception as e:   # a budget too small for the plan: Dynamo wraps the backend's error
        from .plan.search import BudgetError

        cause = getattr(e, "inner_exception", None) or e.__cause__
        if not isinstance(e, BudgetError) and not isinstance(cause, BudgetError):
            raise
        print(f"cfcompile generate: {cause if isinstance(cause, BudgetError) else e}", file=sys.stderr)
        cfcompile.restore(pipe)
        return 2
    streamed_per_step = (_streamed(dits) - before) / max(1, len(ends))
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "n/a (cpu)"
    later = f", then {(ends[-1] - ends[0]) / (len(ends) - 1):.2f} s/step" if len(ends) > 1 else ""
    print(f"generated in {seconds:.1f} s (compiling included{later}); peak device memory {peak}; streamed "
          f"{format_bytes(streamed_per_step)}/step (the transformer's compiled blocks)", flush=True)
    ok = True
    if plain is not None:
        diff = np.abs(result.astype(np.float32) - plain.astype(np.float32))
        tol = 1e-3 if dtype == torch.float32 else 5e-2
        ok = float(diff.max()) <= tol
        print(f"check against the plain pipeline: max difference {diff.max():.2e}, mean {diff.mean():.2e} "
              f"({'OK' if ok else 'MISMATCH'}, tolerance {tol:g})")
    written = save_output(result, out)
    if written != out:
        print(f"imageio-ffmpeg is not installed (pip install imageio imageio-ffmpeg): wrote a GIF instead of {out}")
    print(f"wrote {written}")
    cfcompile.restore(pipe)
    return 0 if ok else 1


def _streamed(stores) -> int:
    """Bytes the live chunkflow graphs reading from ``stores`` have streamed so far (their plans, per call)."""
    from .compiler.backend import compiled_graphs

    return sum(info.served[1] for info in compiled_graphs() if any(info.reads_from(s) for s in stores))


def workload(args: argparse.Namespace) -> int:
    from .elastic.serving.commands import run_workload

    return run_workload(args, "cfcompile workload")


def simulate(args: argparse.Namespace) -> int:
    from .elastic.serving.commands import run_simulate

    return run_simulate(args, "cfcompile simulate")


def costs(args: argparse.Namespace) -> int:
    from .elastic.serving.planned import costs_from_model, save_table

    try:
        degrees = tuple(int(d) for d in args.degrees.split(","))
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        t0 = time.perf_counter()
        table, notes = costs_from_model(models, args.profile, degrees, tiny=args.tiny)
        path = save_table(table, notes, args.out)
    except (ValueError, ImportError, OSError) as e:
        print(f"cfcompile costs: {e}", file=sys.stderr)
        return 2
    rows = [(name, stage, d, " ".join(f"{v:.4g}" for v in co), m.sources.get(stage, {}).get(d, ""))
            for name, m in table.models.items() for stage, row in m.stages.items() for d, co in row.items()]
    print(tabulate(rows, headers=("model", "stage", "SP", "a b c (ms = a x^2 + b x + c)", "source")))
    print(f"{path} in {time.perf_counter() - t0:.0f} s")
    return 0


def plan(args: argparse.Namespace) -> int:
    from .plan.search import BudgetError
    from .planning import plan_model
    from .presets import Workload

    options = {k: v for k, v in dict(memory_budget=args.memory_budget, resident_fraction=args.resident_fraction,
                                     chunk_size=args.chunk_size).items() if v is not None}
    if args.prefetch_depth is not None:
        options["prefetch_depth"] = args.prefetch_depth if args.prefetch_depth == "auto" else int(args.prefetch_depth)
    try:
        workload = Workload(height=args.height, width=args.width, frames=args.frames, batch=args.batch,
                            text_tokens=args.text_tokens, sp_degree=args.sp_degree)
        report = plan_model(args.model, workload, profile=args.profile, tiny=args.tiny, **options)
    except (BudgetError, ValueError, ImportError) as e:
        print(f"cfcompile plan: {e}", file=sys.stderr)
        return 2
    print(report.table())
    if args.out:
        for path in report.write(args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
