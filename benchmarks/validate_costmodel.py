"""Predicted vs measured step time and peak memory: several bench_offload.py processes on one GPU.

    python benchmarks/validate_costmodel.py --model flux --height 512 --width 512 \\
        --groups "inductor,chunkflow:0.25;chunkflow:0,chunkflow:0.75;chunkflow:0.5,chunkflow:1;budget:6GiB"

Each ``;``-separated group of configs runs in its own bench_offload.py process, started ``--stagger`` seconds
apart (model builds must not overlap on the GPU). The processes compile in parallel and take turns on the GPU
for warm-up and timing (`common.gpu_lock`), so timings are as in one process. The device profile is probed once
before they start (the cached probe is what every process's cost model uses). Rows are merged into
$OUT/validate_<model>_<tokens>.json and printed with the prediction error.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).parent))
from common import gpu_lock  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="flux")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--frames", type=int)
    p.add_argument("--groups", help="config groups, ';' between processes, ',' within one")
    p.add_argument("--merge-only", action="store_true",
                   help="run nothing: merge and print the rows already under $OUT/proc*/ (after a run cut short)")
    p.add_argument("--stagger", type=float, default=30.0, help="seconds between process starts")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--deadline", type=float, default=float("inf"),
                   help="seconds after which unfinished processes are killed (their finished rows are kept)")
    args = p.parse_args()

    out = Path(os.environ.get("OUT", "."))
    profile, status = None, 0
    if not args.merge_only:
        if not args.groups:
            p.error("--groups is required unless --merge-only")
        profile, status = run_groups(args, out)
    rows = []
    for path in sorted(glob.glob(str(out / "proc*" / "*.json"))):
        rows += json.load(open(path))
    if not rows:
        print("no results", file=sys.stderr)
        return 1
    tokens = rows[0]["tokens"]
    for r in rows:
        if profile is not None:
            r["profile"] = dataclass_dict(profile)
    with open(out / f"validate_{args.model}_{tokens}.json", "w") as f:
        json.dump(rows, f, indent=1)
    table = []
    for r in rows:
        pred, meas = r.get("predicted_step_ms"), r.get("step_ms")
        err = f"{(pred - meas) / meas * 100:+.1f}%" if pred and meas else ""
        ppk, mpk = r.get("predicted_peak_gib"), r.get("peak_alloc_gib")
        table.append((r["config"], _f(meas), _f(pred), err, _f(mpk, 2), _f(ppk, 2),
                      f"{(ppk - mpk) / mpk * 100:+.1f}%" if ppk and mpk else "", r.get("error", "")[:60]))
    print(tabulate(table, headers=["config", "step ms", "predicted ms", "error", "peak GiB", "predicted GiB",
                                   "error", "failure"]))
    return status


def run_groups(args, out: Path):
    """Start one bench_offload.py process per group; returns the probed profile and the combined exit status."""
    from cfcompile.costmodel.profiles import resolve_profile

    # A lock given by the caller is shared with whatever else it runs on the GPU (e.g. gpu_check.py under flock).
    lock = os.environ.get("CFCOMPILE_BENCH_LOCK") or \
        tempfile.NamedTemporaryFile(prefix="gpu-", suffix=".lock", delete=False).name
    os.environ["CFCOMPILE_BENCH_LOCK"] = lock
    with gpu_lock():
        profile = resolve_profile(None, "cuda")  # probe once (and cache) before the processes start
    print(f"device profile: {profile}", flush=True)
    deadline = time.monotonic() + args.deadline
    procs = []
    for i, configs in enumerate(filter(None, args.groups.split(";"))):
        sub = out / f"proc{i}"
        sub.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(Path(__file__).parent / "bench_offload.py"), "--model", args.model,
               "--configs", configs, "--iters", str(args.iters)]
        for k in ("height", "width", "frames"):
            if getattr(args, k) is not None:
                cmd += [f"--{k}", str(getattr(args, k))]
        env = {**os.environ, "OUT": str(sub), "CFCOMPILE_BENCH_LOCK": lock}
        log = open(sub / "log.txt", "w")
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log, configs))
        print(f"started {configs}", flush=True)
        time.sleep(args.stagger)
    status = 0
    for proc, log, configs in procs:
        try:
            status |= proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # the rows it wrote so far are kept
            proc.kill()
            status |= proc.wait() or 1
            print(f"killed at the deadline: {configs}", flush=True)
        log.close()
        print(f"finished {configs}: exit {proc.returncode}", flush=True)

    return profile, status


def dataclass_dict(p) -> dict:
    import dataclasses

    return dataclasses.asdict(p)


def _f(x, digits=1) -> str:
    return "" if x is None else f"{x:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
