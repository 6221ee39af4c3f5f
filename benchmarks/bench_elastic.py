"""Logical groups vs process groups: the cost of forming a group, and all-to-all latency / bandwidth.

    torchrun --nproc-per-node 2 benchmarks/bench_elastic.py                       # NCCL, 128 KiB .. 64 MiB
    torchrun --nproc-per-node 2 benchmarks/bench_elastic.py --device cpu --sizes small   # gloo smoke test

Measured in one run, on every rank (rank 0 prints and writes $OUT/elastic_<device>_<world>.json):
  * forming: ``cfcompile.elastic.form_group(ranks)`` (host only; median of many, microseconds), the same plus its
    first all-to-all, and ``dist.new_group(ranks)`` plus its first ``all_to_all_single`` (a new communicator each
    time; median of a few).
  * all-to-all over all ranks, per size (bytes each rank sends): ``cfcompile.elastic.all_to_all`` over a
    LogicalGroup (pairwise P2P on the world communicator) vs ``dist.all_to_all_single`` on a group built
    beforehand. Each call is timed alone (device synchronised before and after, ranks aligned by a barrier);
    median over ``--iters``. algbw = bytes / time, busbw = algbw x (N-1)/N (as nccl-tests reports all-to-all).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent.parent))
from cfcompile.elastic import all_to_all, form_group  # noqa: E402

KiB, MiB = 1024, 1024 ** 2
SIZES = {"small": [128 * KiB, 512 * KiB, 1 * MiB],
         "full": [128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB]}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds of one call, all ranks starting together."""
    dist.barrier()
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def forming(ranks: list[int], device: torch.device, reps_host: int, reps_new_group: int) -> dict:
    x = torch.ones(len(ranks) * 1024, device=device)
    host = _each(lambda: form_group(ranks), reps_host)
    logical = [timed(lambda: all_to_all(x, form_group(ranks)), device) for _ in range(reps_new_group)]

    def new_group_and_a2a():
        pg = dist.new_group(ranks)
        out = torch.empty_like(x)
        dist.all_to_all_single(out, x, group=pg)
        return pg

    groups = []
    fresh = [timed(lambda: groups.append(new_group_and_a2a()), device) for _ in range(reps_new_group)]
    for pg in groups:
        dist.destroy_process_group(pg)
    return dict(form_group_us=statistics.median(host) * 1e6, form_group_mean_us=statistics.fmean(host) * 1e6,
                logical_form_and_first_a2a_us=statistics.median(logical) * 1e6,
                new_group_and_first_a2a_us=statistics.median(fresh) * 1e6,
                new_group_and_first_a2a_all_us=[s * 1e6 for s in fresh])


def _each(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def a2a_sizes(sizes: list[int], device: torch.device, dtype: torch.dtype, warmup: int, iters: int) -> list[dict]:
    world = dist.get_world_size()
    ranks = list(range(world))
    group = form_group(ranks)
    pg = dist.new_group(ranks)  # built beforehand: its setup is not timed here
    rows = []
    for nbytes in sizes:
        n = nbytes // torch.empty((), dtype=dtype).element_size()
        n -= n % world
        x = torch.randn(n, device=device).to(dtype)
        out = torch.empty_like(x)
        ref = torch.empty_like(x)
        dist.all_to_all_single(ref, x, group=pg)
        got = all_to_all(x, group)
        if not torch.equal(got, ref):
            raise RuntimeError(f"logical-group all_to_all differs from all_to_all_single at {nbytes} bytes")
        row = dict(bytes=nbytes)
        for name, fn in (("logical", lambda: all_to_all(x, group)),
                         ("process_group", lambda: dist.all_to_all_single(out, x, group=pg))):
            for _ in range(warmup):
                timed(fn, device)
            t = statistics.median(timed(fn, device) for _ in range(iters))
            algbw = nbytes / t / 1e9
            row.update({f"{name}_us": t * 1e6, f"{name}_algbw_gbs": algbw,
                        f"{name}_busbw_gbs": algbw * (world - 1) / world})
        rows.append(row)
    dist.destroy_process_group(pg)
    return rows


def fmt_bytes(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--sizes", default=None, help="small | full | comma-separated byte counts "
                                                 "(default: full on cuda, small on cpu)")
    p.add_argument("--dtype", default=None, help="default bfloat16 on cuda, float32 on cpu")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--form-reps", type=int, default=20000, help="form_group calls timed")
    p.add_argument("--new-group-reps", type=int, default=3, help="new_group + first all-to-all, each a new group")
    args = p.parse_args()

    rank = int(os.environ.get("RANK", 0))
    if args.device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        # eager init: a batched P2P must not be the first NCCL call on a lazily created communicator
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    world = dist.get_world_size()
    sizes_arg = args.sizes or ("full" if args.device == "cuda" else "small")
    sizes = SIZES[sizes_arg] if sizes_arg in SIZES else [int(s) for s in sizes_arg.split(",")]
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    dist.barrier()

    form = forming(list(range(world)), device, args.form_reps, args.new_group_reps)
    rows = a2a_sizes(sizes, device, dtype, args.warmup, args.iters)
    if rank == 0:
        env = dict(date=time.strftime("%Y-%m-%d"), torch=torch.__version__, world=world, backend=dist.get_backend(),
                   device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   nccl_p2p_disable=os.environ.get("NCCL_P2P_DISABLE"), dtype=str(dtype), iters=args.iters)
        result = dict(environment=env, forming=form, all_to_all=rows)
        out = os.path.join(os.environ.get("OUT", "."), f"elastic_{device.type}_{world}.json")
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        from tabulate import tabulate

        print(f"\n{env['device']}, {world} ranks, {env['backend']}, torch {env['torch']}")
        print(tabulate([["form_group (host only)", form["form_group_us"]],
                        ["form_group + first all_to_all", form["logical_form_and_first_a2a_us"]],
                        ["dist.new_group + first all_to_all_single", form["new_group_and_first_a2a_us"]]],
                       headers=["forming a group", "median us"], floatfmt=".1f"))
        print()
        print(tabulate([[fmt_bytes(r["bytes"]), r["logical_us"], r["process_group_us"], r["logical_busbw_gbs"],
                         r["process_group_busbw_gbs"], r["logical_us"] / r["process_group_us"]] for r in rows],
                       headers=["bytes / rank", "logical us", "process group us", "logical busbw GB/s",
                                "process group busbw GB/s", "logical / pg"], floatfmt=".2f"))
        print(f"\nwrote {out}")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
