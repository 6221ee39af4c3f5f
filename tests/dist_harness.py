"""Run a function in N CPU processes joined by a gloo process group; collect each rank's return value.

    results = run_distributed(fn, 2, args=(...,), timeout=300)   # [rank 0's value, rank 1's value]

``fn(rank, world_size, *args)`` runs in a fresh ``spawn``ed process (so it and ``args`` must be picklable: a
module-level function) after ``dist.init_process_group("gloo")`` over a ``FileStore`` in a private temporary
directory, with ``torch.set_num_threads(threads)``. Each rank writes its return value (or its exception and
formatted traceback) with ``torch.save`` to that directory, so tensors come back without shared-memory handoffs.
If a rank raises, its exception is re-raised here (``from`` a ``RemoteTraceback`` carrying the rank's traceback);
the other ranks, usually blocked in a collective, are terminated. A run that outlives ``timeout`` is killed and
raises ``TimeoutError``. CPU only: ``CUDA_VISIBLE_DEVICES`` is emptied in the children.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time
import traceback
from typing import Any, Callable

import torch
import torch.multiprocessing as mp


def cpu_context_parallel_shim() -> None:
    """Let diffusers' context parallelism run on CPU + gloo in this process (the harness's ranks only).

    ``ModelMixin._resolve_parallel_config`` (diffusers 0.42) takes the mesh's device type from
    ``torch._C._get_accelerator()`` and divides the rank by ``torch.accelerator.device_count()``. With no GPU, a CPU
    build of torch reports ``cpu`` and 0 devices (``ZeroDivisionError``); a CUDA build reports ``cuda`` and 0 devices
    (and the mesh would be a cuda mesh). With no usable accelerator both are made to say ``cpu``, 1 device: the mesh
    becomes ``init_device_mesh("cpu", ...)`` (gloo), and the recorded device ``cpu:<rank>`` is only stored."""
    if torch.accelerator.device_count() == 0:
        torch.accelerator.device_count = lambda: 1
        torch._C._get_accelerator = lambda *a, **k: torch.device("cpu")


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in another rank (attached as ``__cause__``)."""

    def __str__(self):
        return self.args[0]


def _child(fn, rank, world_size, args, tmp, threads, env, collective_timeout):
    os.environ.update(env)
    torch.set_num_threads(threads)
    out = os.path.join(tmp, f"rank{rank}.pt")
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", init_method=f"file://{os.path.join(tmp, 'store')}", rank=rank,
                                world_size=world_size, timeout=datetime.timedelta(seconds=collective_timeout))
        try:
            value = fn(rank, world_size, *args)
        finally:
            dist.destroy_process_group()
        result = {"ok": True, "value": value}
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        tb = "".join(traceback.format_exception(e))
        result = {"ok": False, "exc": e, "tb": tb, "time": time.time()}
        try:
            torch.save(result, out + ".tmp")
        except Exception:  # an unpicklable exception: send its text
            result["exc"] = RuntimeError(f"{type(e).__name__}: {e}")
            torch.save(result, out + ".tmp")
        os.replace(out + ".tmp", out)
        open(os.path.join(tmp, "failed"), "w").close()
        return
    torch.save(result, out + ".tmp")
    os.replace(out + ".tmp", out)


def _load(path):
    return torch.load(path, weights_only=False) if os.path.exists(path) else None


def run_distributed(fn: Callable[..., Any], world_size: int = 2, *, args: tuple = (), timeout: float = 300,
                    threads: int = 1, env: dict[str, str] | None = None) -> list[Any]:
    """``[fn(0, world_size, *args), ..., fn(world_size - 1, world_size, *args)]``, each in its own process."""
    tmp = tempfile.mkdtemp(prefix="dist_harness_")
    env = {"CUDA_VISIBLE_DEVICES": "", **(env or {})}
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(fn, r, world_size, args, tmp, threads, env, timeout), daemon=False)
             for r in range(world_size)]
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        failed_at = None
        while any(p.is_alive() for p in procs):
            now = time.monotonic()
            if now > deadline:
                break
            if failed_at is None and (os.path.exists(os.path.join(tmp, "failed")) or
                                      any(p.exitcode not in (None, 0) for p in procs)):
                failed_at = now
            if failed_at is not None and now - failed_at > 5:  # the others are stuck in a collective
                break
            time.sleep(0.05)
        alive = [r for r, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        results = [_load(os.path.join(tmp, f"rank{r}.pt")) for r in range(world_size)]
        errors = sorted((res["time"], r, res) for r, res in enumerate(results) if res is not None and not res["ok"])
        if errors:
            _, r, res = errors[0]  # the first rank to fail: the others usually fail because of it
            exc = res["exc"]
            others = [f"rank {r2}: {type(x['exc']).__name__}" for _, r2, x in errors[1:]]
            raise exc from RemoteTraceback(f"\n[rank {r} of {world_size}]\n{res['tb']}" +
                                           (f"(also failed: {', '.join(others)})\n" if others else ""))
        if alive:
            raise TimeoutError(f"run_distributed: ranks {alive} still running after {timeout:.0f} s (killed)")
        missing = [r for r, res in enumerate(results) if res is None]
        if missing:
            raise RuntimeError(f"run_distributed: ranks {missing} returned nothing (exit codes "
                               f"{[procs[r].exitcode for r in missing]})")
        return [res["value"] for res in results]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def forbid_new_groups() -> None:
    """Make ``new_group`` / ``split_group`` raise in this process: the group-free collectives must never create a
    communicator."""
    import torch.distributed as dist
    import torch.distributed.distributed_c10d as c10d

    def boom(*a, **k):
        raise AssertionError("a communicator was created (new_group/split_group called)")
    for mod in (dist, c10d):
        for name in ("new_group", "split_group"):
            if hasattr(mod, name):
                setattr(mod, name, boom)
