"""The ``workload`` and ``simulate`` commands, shared by ``cfcompile`` and ``python -m cfcompile.elastic.serving``.

Each command has an argument builder (``add_workload_arguments``, ``add_simulate_arguments``) and a runner
(``run_workload``, ``run_simulate``: parsed arguments in, exit status out, errors on stderr as ``PROG: message``),
so both entry points take the same options with the same defaults and do the same thing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TABLES = ("--profile H100 or H200: the cost table predicted by plan_model that ships with cfcompile; --costs "
          "FILE: a table of your own; neither: the synthetic table (GF-DiT's H20 numbers)")
WORKLOAD_DESCRIPTION = ("Generate a serving workload. Deadlines and the arrival rate are priced by a cost table: "
                        + TABLES + ". Simulate it with the same table.")
SIMULATE_DESCRIPTION = ("Simulate serving a workload under each --policy. Costs: " + TABLES + ". Writes "
                        "OUT/<policy>/summary.json and trace.json, OUT/comparison.md, .json and .png (latency CDF, "
                        "SLO attainment per class).")


def add_workload_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--mix", default="gfdit", help="gfdit, bursty or uniform (optionally :qwen-image or :wan)")
    p.add_argument("--gpus", type=int, default=8, help="pool size the arrival rate is scaled to")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--load", type=float, default=1.0, help="offered load relative to the pool")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", help="H100 or H200: price with the shipped plan_model table")
    p.add_argument("--costs", help="cost table JSON")
    p.add_argument("--out", "-o", required=True, help="JSON lines file to write")
    return p


def add_simulate_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("workload")
    p.add_argument("--gpus", type=int, help="pool size (default: what --gpu-memory lists, else 8)")
    p.add_argument("--policy", action="append", required=True,
                   help="static-<k>, fcfs, srtf, edf (edf-best-fit), edf-triage, memory-aware, memory-aware-notriage, "
                        "preempt or module:factory; repeat to compare")
    p.add_argument("--profile", help="H100 or H200: the shipped plan_model cost table and that GPU's memory")
    p.add_argument("--costs", help="cost table JSON (overrides --profile's table)")
    p.add_argument("--refit", metavar="MEASURED_CSV",
                   help="measured stage times (columns model,stage,tokens,degree,ms) that correct the table")
    p.add_argument("--refit-mode", choices=("calibrate", "replace"), default="calibrate",
                   help="calibrate: scale each measured model/stage by median measured/predicted (default); "
                        "replace: refit the measured degrees from the rows")
    p.add_argument("--chunk-steps", type=int, default=5, help="denoising steps per chunk task (default 5)")
    p.add_argument("--gpu-memory", "--mem-gb", dest="gpu_memory",
                   help="GB per GPU: one number, or SIZExCOUNT parts such as 80x4,24x4 (default: the profile's GPU, "
                        "80 for H100 and 141 for H200; 96 without a profile)")
    p.add_argument("--duration-error", type=float, default=0.0, metavar="SIGMA",
                   help="prediction error: each task runs its predicted time x exp(SIGMA x z), z standard normal drawn "
                        "per (request, task) from --duration-seed; policies still see the predictions (default 0)")
    p.add_argument("--duration-seed", type=int, default=0, help="seed of the --duration-error draws (default 0)")
    p.add_argument("--no-plot", action="store_true", help="skip OUT/comparison.png")
    p.add_argument("--out", "-o", required=True,
                   help="directory: <policy>/summary.json, <policy>/trace.json, comparison.*")
    return p


def run_workload(args: argparse.Namespace, prog: str = "cfcompile workload") -> int:
    from .planned import load_costs
    from .workload import generate_workload, write_workload

    try:
        table = load_costs(args.profile, args.costs)
        reqs = generate_workload(args.mix, args.gpus, args.minutes, args.load, args.seed, costs=table)
    except (ValueError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    print(f"{len(reqs)} requests -> {write_workload(reqs, args.out)}")
    return 0


def run_simulate(args: argparse.Namespace, prog: str = "cfcompile simulate") -> int:
    """Each policy on the same workload: one comparison table, and ``OUT/<policy>/`` with its summary and trace."""
    from .placement import parse_gpu_memory
    from .planned import gpu_memory, load_costs
    from .report import comparison_table, write_comparison
    from .simulator import SimConfig, simulate
    from .workload import read_workload

    try:
        requests = read_workload(args.workload)
        costs = load_costs(args.profile, args.costs, args.refit, args.refit_mode)
        spec = args.gpu_memory or gpu_memory(args.profile) or 96.0
        mem = parse_gpu_memory(spec, args.gpus if args.gpus else (8 if "x" not in str(spec) else None))
        gpus = len(mem)
        config = SimConfig(chunk_steps=args.chunk_steps, mem_gb=mem, duration_error=args.duration_error,
                           duration_seed=args.duration_seed)
        results = []
        for name in args.policy:
            results.append(simulate(requests, gpus, name, costs, config))
            results[-1].policy = name  # as asked for (edf-best-fit, module:factory): the row and folder name
        paths = write_comparison(results, Path(args.out), plot=not args.no_plot)
    except (ValueError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    pool = ", ".join(f"{n} x {gb:g} GB" for gb, n in _runs(mem))
    print(f"{len(requests)} requests on {gpus} GPUs ({pool})")
    print(comparison_table([r.summary for r in results]))
    if not args.no_plot and not any(p.suffix == ".png" for p in paths):
        print("no comparison.png: matplotlib is not installed (pip install matplotlib)")
    print(f"wrote {', '.join(str(p) for p in paths)} and a summary.json and trace.json per policy")
    return 0


def _runs(values):
    """Runs of equal values: [[value, count], ...]."""
    out = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return out


__all__ = ["add_workload_arguments", "add_simulate_arguments", "run_workload", "run_simulate",
           "WORKLOAD_DESCRIPTION", "SIMULATE_DESCRIPTION", "TABLES"]
