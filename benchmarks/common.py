"""Helpers shared by the GPU benchmarks: models at real size with random weights, timing, memory, H2D probe."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import statistics
import time

import torch


def flux_inputs(image_tokens: int, text_tokens: int = 512, device="cuda", dtype=torch.bfloat16, config=None):
    """Inputs of FluxTransformer2DModel for a square latent of ``image_tokens`` packed tokens."""
    in_ch = getattr(config, "in_channels", 64)
    joint = getattr(config, "joint_attention_dim", 4096)
    pooled = getattr(config, "pooled_projection_dim", 768)
    g = torch.Generator(device="cpu").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(device, dtype)  # noqa: E731
    side = int(image_tokens ** 0.5)
    ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(side).float(), torch.arange(image_tokens // side).float(),
                                     indexing="ij"), -1).reshape(-1, 3)
    return dict(hidden_states=r(1, image_tokens, in_ch), encoder_hidden_states=r(1, text_tokens, joint),
                pooled_projections=r(1, pooled), timestep=torch.tensor([0.5], device=device, dtype=dtype),
                img_ids=ids.to(device, dtype), txt_ids=torch.zeros(text_tokens, 3, device=device, dtype=dtype),
                guidance=torch.tensor([3.5], device=device, dtype=dtype), return_dict=False)


def build_flux(device="cuda", dtype=torch.bfloat16, **config):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = FluxTransformer2DModel(guidance_embeds=True, **config)
    finally:
        torch.set_default_dtype(old)
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def gpu_lock():
    """Exclusive use of the GPU for timing when several benchmark processes share it (``CFCOMPILE_BENCH_LOCK`` =
    a lock file): they compile in parallel, and time one at a time."""
    path = os.environ.get("CFCOMPILE_BENCH_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def time_steps(fn, warmup: int = 3, iters: int = 10) -> dict:
    """Median wall time of ``fn()`` per call after warm-up; the first call's time is reported as compile time.

    The first call (compilation) runs outside `gpu_lock`; warm-up and timed calls inside it. A first call of
    another process may still overlap a timed one: it perturbs at most one or two of ``iters`` calls, which the
    median ignores."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - t0
    with gpu_lock():
        return _timed(fn, warmup, iters, first)


def _timed(fn, warmup: int, iters: int, first: float) -> dict:
    for _ in range(warmup - 1):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    med = statistics.median(times)
    return dict(step_ms=med, min_ms=min(times), max_ms=max(times), first_call_s=first,
                compile_s=max(first - med / 1e3, 0.0),
                peak_alloc_gib=torch.cuda.max_memory_allocated() / 2**30,
                peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)


def h2d_bandwidth(nbytes: int = 2**30, iters: int = 5) -> float:
    """GB/s of a pinned (cudaHostRegister'ed, UVA) -> device copy on a side stream, as chunkflow does it."""
    with gpu_lock():
        return _h2d_bandwidth(nbytes, iters)


def _h2d_bandwidth(nbytes: int, iters: int) -> float:
    from cfcompile.pinned import cuda_view, pin

    host = torch.empty(nbytes, dtype=torch.uint8)
    pin(host)
    src = cuda_view(host, host.data_ptr(), nbytes)
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        dst.copy_(src, non_blocking=True)
        s.synchronize()
        best = 0.0
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(s)
            dst.copy_(src, non_blocking=True)
            b.record(s)
            b.synchronize()
            best = max(best, nbytes / (a.elapsed_time(b) / 1e3) / 1e9)
    del src, dst
    torch.cuda.cudart().cudaHostUnregister(host.data_ptr())
    return best


def environment() -> dict:
    return dict(date=time.strftime("%Y-%m-%d"), device=torch.cuda.get_device_name(), torch=torch.__version__,
                cuda=torch.version.cuda)


def write(results: list[dict], name: str) -> None:
    out = os.environ.get("OUT", ".")
    with open(os.path.join(out, name), "w") as f:
        json.dump(results, f, indent=1)


def overlap_ms(intervals: list[tuple[float, float]], others: list[tuple[float, float]]) -> float:
    """Total length of ``intervals`` covered by the union of ``others`` (all in the same time unit)."""
    merged: list[list[float]] = []
    for s, e in sorted(others):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    total = 0.0
    for s, e in intervals:
        for ms, me in merged:
            if me <= s:
                continue
            if ms >= e:
                break
            total += min(e, me) - max(s, ms)
    return total


def collective_times(kernels: list[tuple[str, float, float]], steps: int) -> dict:
    """Per step, from profiled GPU activity ``(name, start_us, end_us)``: the time NCCL kernels run, how much of it
    runs while a copy (``Memcpy ...``) is in flight, and the median NCCL kernel. A collective slowed by a weight
    copy on a shared PCIe path shows as a longer NCCL time than the same step without offloading."""
    nccl = [(s, e) for n, s, e in kernels if "nccl" in n.lower()]
    copies = [(s, e) for n, s, e in kernels if n.startswith("Memcpy")]
    durations = sorted(e - s for s, e in nccl)
    return dict(collective_ms=sum(durations) / 1e3 / steps,
                collective_under_copy_ms=overlap_ms(nccl, copies) / 1e3 / steps,
                collectives_per_step=len(nccl) / steps,
                median_collective_us=durations[len(durations) // 2] if durations else None,
                copy_ms=sum(e - s for s, e in copies) / 1e3 / steps)


def profile_kernels(fn, steps: int = 3) -> list[tuple[str, float, float]]:
    """``(name, start_us, end_us)`` of every GPU kernel and memcpy of ``steps`` calls of ``fn`` (torch.profiler)."""
    from torch.autograd import DeviceType

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return [(e.name, e.time_range.start, e.time_range.end) for e in prof.events()
            if e.device_type == DeviceType.CUDA]


def workload_parser(doc: str, model: str = "flux"):
    """An argument parser with ``--model --height --width --frames`` (a preset and one workload) and a
    ``workload_of(args)`` helper turning them into a `cfcompile.presets.Workload`."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--model", default=model, help="preset: flux, qwen-image, wan, sd3")
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--frames", type=int, default=1)
    return p


def workload_of(args):
    from cfcompile.presets import Workload

    return Workload(height=args.height, width=args.width, frames=args.frames)


_GLOO_SHIM = None   # the torch.library registration below; kept alive for the process


def _gloo_cuda_all_gather_shim() -> None:
    """Rehearsals only: torch 2.11's functional ``all_gather_into_tensor`` on gloo with CUDA tensors segfaults in
    its ``wait_tensor`` (the plain ``dist.all_gather_into_tensor`` and the functional all-to-all work), and diffusers
    gathers Ulysses' output with it. Replace its CUDA kernel with the synchronous c10d call; ``wait_tensor`` on an
    output with no pending work returns it as is."""
    from torch.distributed.distributed_c10d import _resolve_process_group

    @torch._dynamo.disable  # called from compiled code: Dynamo would try to trace the kernel's frame
    def all_gather(x: torch.Tensor, group_size: int, group_name: str) -> torch.Tensor:
        out = x.new_empty((group_size * x.shape[0], *x.shape[1:]))
        torch.distributed.all_gather_into_tensor(out, x.contiguous(), group=_resolve_process_group(group_name))
        return out

    global _GLOO_SHIM
    _GLOO_SHIM = torch.library.Library("_c10d_functional", "IMPL")
    _GLOO_SHIM.impl("all_gather_into_tensor", all_gather, "CUDA")


def init_distributed(cuda: bool):
    """torchrun's process group (NCCL on GPUs, gloo on the CPU) and this rank's device and dtype:
    ``(rank, world, device, dtype)``. On a CPU-only torch, diffusers' context parallelism divides the rank by
    ``torch.accelerator.device_count()`` (0): it is made 1 here (tests/test_ulysses.py explains).

    ``BENCH_DIST_BACKEND=gloo`` on a GPU machine is a rehearsal of a multi-GPU run on fewer GPUs: gloo's CUDA
    collectives (staged through host memory) and ranks sharing GPUs (rank % device count). NCCL refuses two ranks
    on one GPU. It runs the CUDA side of a script (streams, events, pinned copies, the pass around collectives,
    memory statistics) before a multi-GPU machine is there; its times and collective rows mean nothing."""
    import torch.distributed as dist

    backend = os.environ.get("BENCH_DIST_BACKEND") or ("nccl" if cuda else "gloo")
    if backend not in ("nccl", "gloo") or (backend == "nccl" and not cuda):
        raise SystemExit(f"BENCH_DIST_BACKEND={backend!r}: use nccl (GPUs) or gloo")
    rank = int(os.environ.get("RANK", 0))
    device = torch.device("cpu")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", rank))
        if backend == "nccl" and local >= torch.cuda.device_count():
            raise SystemExit(f"local rank {local} but {torch.cuda.device_count()} GPU(s): start one process per GPU "
                             "(torchrun --nproc-per-node <GPUs>), or rehearse with BENCH_DIST_BACKEND=gloo")
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)  # before the process group: NCCL binds its communicator to this device
    if backend == "nccl":
        dist.init_process_group(backend, device_id=device)  # eager: a batched P2P must not be the first NCCL call
    else:
        dist.init_process_group(backend)
        if cuda:
            _gloo_cuda_all_gather_shim()
    rank, world = dist.get_rank(), dist.get_world_size()
    if not cuda and torch.accelerator.current_accelerator() is None:
        torch.accelerator.device_count = lambda: 1
    return rank, world, device, (torch.bfloat16 if cuda else torch.float32)
