"""Ulysses sequence parallelism (diffusers' context parallelism) with the weights streamed by chunkflow, one
process per GPU under torchrun.

    torchrun --nproc-per-node 2 examples/ulysses.py --memory-budget 12GiB     # 2 GPUs: FLUX.1's 12B transformer
    torchrun --nproc-per-node 2 examples/ulysses.py --model black-forest-labs/FLUX.1-dev   # its real weights
    torchrun --nproc-per-node 2 examples/ulysses.py --tiny --check            # the CPU (gloo): a tiny Flux

Every rank builds the same transformer (random weights from FLUX.1-dev's config, seed 0, unless ``--model`` loads
the real ones from a local folder or the hub cache), splits the sequence over the ranks with
``enable_parallelism(ContextParallelConfig(ulysses_degree=N))``, offloads the weights to pinned host memory with
`cfcompile.offload` (after ``enable_parallelism``: it readies diffusers' split hooks for Dynamo) and compiles with the
chunkflow backend. The Dynamo graph holds the all-to-alls; the cost model keeps chunk copies out of their windows
where they share the PCIe path. Every rank makes the same plan (rank 0's profile). ``--check`` compares each rank's
output with the model run without parallelism (same weights, same inputs) and exits non-zero if they differ.
"""

import argparse
import os
import time

import torch
import torch.distributed as dist

import cfcompile
from cfcompile.config import format_bytes
from cfcompile.presets import Workload, get_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny Flux with random weights, on the CPU (gloo)")
    ap.add_argument("--model", help="local folder or hub id of a Flux pipeline (its transformer is loaded from the "
                                    "hub cache, never downloaded); default: random weights from FLUX.1-dev's config")
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--memory-budget", default="12GiB", help="device memory per rank for the transformer")
    ap.add_argument("--check", action="store_true", help="compare with the model run without parallelism")
    args = ap.parse_args()

    on_gpu = torch.cuda.is_available() and not args.tiny
    dist.init_process_group("nccl" if on_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        device, dtype = torch.device("cuda"), torch.bfloat16
    else:
        # Only for a CPU try-out: diffusers (0.42) builds the context-parallel mesh from the accelerator and divides
        # the rank by torch.accelerator.device_count(), 0 without a GPU. Say "cpu, one device": the mesh is gloo's.
        torch.accelerator.device_count = lambda: 1
        torch._C._get_accelerator = lambda *a, **k: torch.device("cpu")
        device, dtype = torch.device("cpu"), torch.float32

    preset = get_preset("flux")
    if args.tiny:
        model = preset.build("cpu", dtype, tiny=True)          # seed 0: the same weights on every rank
        workload = Workload(height=64, width=64, text_tokens=8, sp_degree=world)
        budget = "64MiB"
    elif args.model:
        from diffusers import FluxTransformer2DModel
        model = FluxTransformer2DModel.from_pretrained(args.model, subfolder="transformer", torch_dtype=dtype,
                                                       local_files_only=True).eval().requires_grad_(False)
        workload, budget = Workload(height=args.height, width=args.width, sp_degree=world), args.memory_budget
    else:
        from cfcompile.full_pipelines import materialize, parameters_on_meta
        torch.manual_seed(0)
        torch.cuda.manual_seed(0)
        with parameters_on_meta():                            # FLUX.1-dev's transformer, filled once on the GPU
            model = preset.build("cpu", dtype)
        materialize(model, dtype, fill_device=device)
        workload, budget = Workload(height=args.height, width=args.width, sp_degree=world), args.memory_budget
    inputs = preset.inputs(model.config, workload, device, dtype)

    reference = None
    if args.check:   # the same model without parallelism, eager (host weights moved over for it, then back)
        with torch.no_grad():
            reference = model.to(device)(**inputs)[0].float().cpu()
        model.to("cpu")

    from diffusers import ContextParallelConfig
    model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))
    cfcompile.offload(model, device=device)
    fast = torch.compile(model, backend="chunkflow", options={"memory_budget": budget})

    with torch.no_grad():
        t0 = time.perf_counter()
        out = fast(**inputs)[0]
        first = time.perf_counter() - t0
        if on_gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = fast(**inputs)[0]
        if on_gpu:
            torch.cuda.synchronize()
        second = time.perf_counter() - t0
    out = getattr(out, "wait", lambda: out)()   # diffusers' eager gather may hand back an unwaited tensor
    plan = cfcompile.compiled_graphs()[-1].plan
    line = (f"rank {rank}/{world}: first call (compiles) {first:.1f} s, second {second * 1e3:.1f} ms, "
            f"{format_bytes(plan.total_resident_bytes)} resident, {format_bytes(plan.streamed_bytes)} streamed "
            f"per call, plan {plan.fingerprint()[:12]}")
    if on_gpu:
        line += f", peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    if reference is not None:
        diff = (out.float().cpu() - reference).abs().max().item()
        line += f", max difference to the model without parallelism {diff:.2e}"
    print(line, flush=True)
    dist.destroy_process_group()
    if reference is not None and diff > (1e-4 if dtype == torch.float32 else 5e-2):
        raise SystemExit(f"rank {rank}: the parallel output differs from the model without parallelism")


if __name__ == "__main__":
    main()
