"""A preset DiT with diffusers' Ulysses context parallelism over N processes, through chunkflow: no offloading,
SGLang-style `layerwise`, and chunkflow at several residencies / budgets, all in one run.

    torchrun --nproc-per-node 2 benchmarks/bench_ulysses.py --model flux --height 1024 --width 1024 \\
        --configs inductor,layerwise,chunkflow:0.5,chunkflow:0.75,budget:12GiB
    NCCL_P2P_DISABLE=1 torchrun ...                  # a PCIe-only node: collectives share the path with H2D copies
    torchrun --nproc-per-node 2 benchmarks/bench_ulysses.py --model flux --tiny --device cpu --configs inductor,chunkflow:0.5

Each rank builds the same model (seed 0), `model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=N))`,
runs it once eagerly (the reference every row's ``rel_err`` compares with) and compiles it per config; rank 0 prints
each row as it is measured and keeps $OUT/ulysses_<model>_<tokens>_sp<N><--tag>.json up to date (a run stopped by a
deadline keeps its rows). Step time: median wall time of synchronized calls after warm-up (all ranks step together;
rank 0's numbers). Memory: rank 0's peaks. Collectives: NCCL kernel time per step from torch.profiler over 3 more
steps, and the part of it that runs while a copy is in flight (``collective_ms``, ``collective_under_copy_ms``). The
predicted step time and peak come from the backend's cost model; ``graph_breaks`` / ``chunkflow_graphs`` show a
forward that did not stay in one graph. Options per config: `chunkflow:<rf>[:<policy>]` (policy yield / overlap /
auto), `budget:<bytes>[:<policy>]`, `layerwise`, `inductor`; `budget:layerwise` is the measured peak of the
`layerwise` row before it (chunkflow at equal device memory). Several runs may share the GPUs: with
``CFCOMPILE_BENCH_LOCK`` set they compile in parallel and time one at a time (benchmarks/ulysses_all.sh).
``BENCH_DIST_BACKEND=gloo`` rehearses the script with all ranks on one GPU (benchmarks/common.py; times mean
nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).parent.parent))
import cfcompile  # noqa: E402
from cfcompile.compiler.backend import chunkflow as chunkflow_backend, compiled_graphs  # noqa: E402
from cfcompile.presets import Workload, get_preset  # noqa: E402
from cfcompile import _compat  # noqa: E402
from common import collective_times, gpu_lock, init_distributed, profile_kernels  # noqa: E402


def parse(spec: str) -> list[tuple[str, dict | None]]:
    out = []
    for c in filter(None, spec.split(",")):
        kind, *args = c.split(":")
        if kind == "inductor":
            out.append((c, None))
        elif kind == "layerwise":
            out.append((c, {"schedule": "layerwise"}))
        elif kind == "chunkflow":
            out.append((c, {"resident_fraction": float(args[0]), **({"collective_policy": args[1]} if len(args) > 1
                                                                      else {})}))
        elif kind == "budget":
            out.append((c, {"memory_budget": args[0], **({"collective_policy": args[1]} if len(args) > 1 else {})}))
        else:
            raise SystemExit(f"--configs: unknown {c!r}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="flux")
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--frames", type=int, default=1)
    p.add_argument("--text-tokens", type=int)
    p.add_argument("--configs", default="inductor,layerwise,chunkflow:0.5")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--heads", type=int, help="override num_attention_heads (a tiny model at Ulysses degree > 2)")
    p.add_argument("--tag", default="", help="suffix of the JSON's name (several runs side by side)")
    args = p.parse_args()

    cuda = args.device == "cuda"
    rank, world, device, dtype = init_distributed(cuda)
    from diffusers import ContextParallelConfig

    preset = get_preset(args.model)
    workload = Workload(height=args.height, width=args.width, frames=args.frames, text_tokens=args.text_tokens,
                        sp_degree=world)
    model = preset.build(device, dtype, tiny=args.tiny, **({"num_attention_heads": args.heads} if args.heads else {}))
    inputs = preset.inputs(model.config, workload, device, dtype)
    model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))
    _compat.prepare_context_parallel(model)   # else a graph break per block under compile (Wan)
    tokens = preset.tokens(workload)
    results = []

    def timed(fn) -> dict:
        def sync():
            if cuda:
                torch.cuda.synchronize()
            dist.barrier()

        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        first = time.perf_counter() - t0
        log(f"  first call (compile) {first:.1f} s")
        with turn():
            for _ in range(2):
                fn()
            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(args.iters):
                sync()
                t = time.perf_counter()
                fn()
                sync()
                times.append((time.perf_counter() - t) * 1e3)
            r = dict(step_ms=statistics.median(times), first_call_s=first)
            if cuda:
                r.update(peak_alloc_gib=torch.cuda.max_memory_allocated() / 2**30,
                         peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
                # NCCL kernel time per step, and how much of it runs under a weight copy: no offloading is the
                # collective time without prefetch, the offloading configs with it
                sync()
                r.update(collective_times(profile_kernels(fn, steps=3), steps=3))
            return r

    @contextlib.contextmanager
    def turn():
        """The GPUs to this run alone while it times (``CFCOMPILE_BENCH_LOCK``: runs side by side compile in
        parallel and time one at a time). Only rank 0 takes the lock, and its ranks meet at a barrier after it:
        ranks of two runs never wait on each other's locks."""
        with gpu_lock() if rank == 0 else contextlib.nullcontext():
            dist.barrier()
            try:
                yield
            finally:
                dist.barrier()

    def out_of(o):
        import torch.distributed._functional_collectives as funcol

        o = o[0] if isinstance(o, (tuple, list)) else o
        return o.wait() if isinstance(o, funcol.AsyncCollectiveTensor) else o

    started = time.perf_counter()
    out_dir = Path(os.environ.get("OUT", "."))
    name = f"ulysses_{args.model}{'-tiny' if args.tiny else ''}_{tokens}_sp{world}{args.tag}.json"
    env = dict(date=time.strftime("%Y-%m-%d"), torch=torch.__version__, world=world, model=args.model,
               tokens=tokens, device=torch.cuda.get_device_name() if cuda else "cpu",
               dist_backend=dist.get_backend(), nccl_p2p_disable=os.environ.get("NCCL_P2P_DISABLE", "0"))

    def log(msg: str) -> None:
        if rank == 0:
            print(f"[{time.perf_counter() - started:7.1f} s] {msg}", flush=True)

    def done(r: dict) -> None:
        """Keep each row as soon as it is measured: a run stopped by its deadline still leaves the rows before."""
        r.update(env)
        results.append(r)
        if rank == 0:
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
            (out_dir / name).write_text(json.dumps(results, indent=1))

    configs = parse(args.configs)

    def rel_err(out) -> float:
        return ((out.float() - ref).abs().max() / ref.abs().max()).item()

    with torch.no_grad():
        ref = out_of(model(**inputs)).float()   # eager, the same parallelism: every row's output is compared to it
        for label, options in configs:
            if options is None:
                log(f"{label}: compiling and timing")
                counters.clear()
                fn = torch.compile(model, backend="inductor")
                r = dict(config=label, **timed(lambda: fn(**inputs)))
                r.update(graphs=counters["stats"]["unique_graphs"], graph_breaks=sum(counters["graph_break"].values()),
                         rel_err=rel_err(out_of(fn(**inputs))))
                done(r)
                del fn
        if any(o is not None for _, o in configs):
            log("offloading the weights to pinned host memory")
            cfcompile.offload(model, device=device)
            for label, options in configs:
                if options is None:
                    continue
                torch._dynamo.reset()
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
                if options.get("memory_budget") == "layerwise":
                    # equal device memory: the measured peak of the layerwise row (the paper's comparison)
                    lw = [x for x in results if x.get("schedule") == "layerwise" and "peak_alloc_gib" in x]
                    if not lw:
                        raise SystemExit("budget:layerwise needs a layerwise config before it in --configs, on a GPU")
                    options = {**options, "memory_budget": int(lw[-1]["peak_alloc_gib"] * 2**30)}
                log(f"{label}: compiling and timing")
                counters.clear()
                earlier = {id(g) for g in compiled_graphs()}
                fn = torch.compile(model, backend=chunkflow_backend, options=options)
                r = timed(lambda: fn(**inputs))
                # the graph that streams the blocks; a graph break would add others (recorded, and then the
                # predicted numbers are this graph's only)
                graphs = [g for g in compiled_graphs() if id(g) not in earlier]
                g = max(graphs, key=lambda g: g.plan.streamed_bytes + g.plan.total_resident_bytes)
                r.update(chunkflow_graphs=len(graphs), graph_breaks=sum(counters["graph_break"].values()))
                out = out_of(fn(**inputs))
                pred = g.prediction
                budget = options.get("memory_budget")
                r.update(budget_gib=budget / 2**30 if isinstance(budget, int) else budget)
                r.update(config=label, predicted_step_ms=pred.step_ms, predicted_peak_gib=pred.peak_bytes / 2**30,
                         resident_gib=g.plan.total_resident_bytes / 2**30,
                         arena_gib=g.plan.total_arena_bytes / 2**30,
                         streamed_gib=g.plan.streamed_bytes / 2**30,
                         policy=g.plan.collective_policy, schedule=g.plan.schedule,
                         plan=g.plan.fingerprint()[:16],
                         rel_err=rel_err(out))
                fps = [None] * world
                dist.all_gather_object(fps, r["plan"])
                r["plans_agree"] = len(set(fps)) == 1
                done(r)
                del fn
    log(f"done: {out_dir / name}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
