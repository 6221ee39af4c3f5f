"""Simulated elastic serving on the GF-DiT mix, costs predicted by plan_model (no GPU): the numbers behind the
"Elastic serving, simulated" section of RESULTS.md.

    python benchmarks/bench_serving.py --out benchmarks/results/serving_2026-12-07

A 10-minute trace of GF-DiT's mix (S/M/L, piecewise Poisson) per load and mix (``gfdit:qwen-image``,
``gfdit:wan``, or ``gfdit``: both models with equal odds) on each pool:
  fits      GPUs of the H100 and H200 profiles (80 / 141 GB, every model fits), loads 0.6-1.2, policies
            static-1/2/4/8, srtf, edf, edf-triage, memory-aware (and memory-aware-notriage, its ablation)
  48 GB, 24 GB, 80+24 GB   H100 costs (--pool-profiles H200: H200 compute and link) on pools where not every
            model fits (Qwen-Image's 58 GB pipeline and Wan's 40 GB + 15 GB of predicted activations fit no 48 GB
            GPU; nothing fits 24 GB; half the mixed pool does)
Every workload is generated with the same profile's table (deadlines = arrival + alpha x predicted single-GPU time)
and simulated with it. Writes results.json (every summary, plus the CPU seconds of each run) and results.md (the
tables), and prints the target checks. A simulation runs on one core: its time is ``time.process_time()``
(``cpu_s``; ``wall_s`` beside it). ``--duration-error SIGMA`` (``SimConfig.duration_error``): every task runs its
predicted time x a lognormal factor drawn per (request, task) from ``--duration-seed``; policies see predictions.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cfcompile.elastic.serving import SimConfig, generate_workload, simulate  # noqa: E402
from cfcompile.elastic.serving.placement import parse_gpu_memory  # noqa: E402
from cfcompile.elastic.serving.planned import GPU_MEMORY_GB, shipped_costs  # noqa: E402

logger = logging.getLogger(__name__)

POLICIES = ("static-1", "static-2", "static-4", "static-8", "srtf", "edf", "edf-triage", "memory-aware",
            "memory-aware-notriage")
LOADS = (0.6, 0.8, 1.0, 1.2)
MEMORY_POOLS = {"48 GB": "48", "24 GB": "24", "80+24 GB": "80x{half},24x{half}"}


def run_one(reqs, gpus, policy, costs, mem, duration_error: float = 0.0, duration_seed: int = 0) -> dict:
    config = SimConfig(mem_gb=mem, duration_error=duration_error, duration_seed=duration_seed)
    t0, w0 = time.process_time(), time.perf_counter()
    s = simulate(reqs, gpus, policy, costs, config).summary
    s["cpu_s"] = round(time.process_time() - t0, 3)
    s["wall_s"] = round(time.perf_counter() - w0, 3)
    return s


def sweep(out: list, mix: str, profile: str, pool: str, gpus: int, mem: tuple, minutes: float, seed: int, loads,
          policies, duration_error: float = 0.0, duration_seed: int = 0):
    costs = shipped_costs(profile)
    for load in loads:
        reqs = generate_workload(mix, gpus=gpus, minutes=minutes, load=load, seed=seed, costs=costs)
        for p in policies:
            s = run_one(reqs, gpus, p, costs, mem, duration_error, duration_seed)
            row = {"mix": mix, "profile": profile, "pool": pool, "gpus": gpus, "load": load, "summary": s}
            if duration_error:
                row.update(duration_error=duration_error, duration_seed=duration_seed)
            out.append(row)
            logger.info("%s %s %s %d GPUs load %.1f %-12s SLO %.3f goodput %.4f p95 %s ms (%.2f s)", mix, profile,
                        pool, gpus, load, p, s["slo_attainment"], s["goodput_rps"], s["latency_ms"]["p95"],
                        s["cpu_s"])


def table(rows: list) -> str:
    from tabulate import tabulate

    head = ["policy", "load", "SLO", "SLO S", "SLO M", "SLO L", "goodput rps", "p95 s", "loads", "streamed"]
    body = []
    for r in rows:
        s = r["summary"]
        pc = s["per_class"]
        body.append([s["policy"], r["load"], s["slo_attainment"], *(pc.get(k, {}).get("slo_attainment") for k in
                                                                    "SML"),
                     s["goodput_rps"], None if s["latency_ms"]["p95"] is None else s["latency_ms"]["p95"] / 1e3,
                     s["model_loads"], s["streamed_tasks"]])
    return tabulate(body, headers=head, tablefmt="github", floatfmt=".3f")


def checks(results: list) -> list[str]:
    """The issue's targets, each with its numbers."""
    lines = []
    groups: dict = {}
    for r in results:
        key = (r["mix"], r["profile"], r["pool"], r["gpus"], r["load"])
        groups.setdefault(key, {})[r["summary"]["policy"]] = r["summary"]
    for (mix, prof, pool, gpus, load), by in sorted(groups.items()):
        statics = {p: s["goodput_rps"] for p, s in by.items() if p.startswith("static")}
        best = max(statics, key=statics.get) if statics else None
        edf, ma = by.get("edf"), by.get("memory-aware")
        parts = [f"{mix} {prof} {pool} {gpus} GPUs load {load}:"]
        if best and statics[best]:  # goodput counts met deadlines per second of the arrivals: at most the arrival rate
            any_s = next(iter(by.values()))
            ceiling = any_s["requests"] / any_s["trace_s"] / statics[best]
            parts.append(f"(ceiling, every deadline met: {ceiling:.2f}x)")
        for name in ("edf", "edf-triage"):
            if best and name in by:
                ratio = by[name]["goodput_rps"] / statics[best] if statics[best] else float("inf")
                parts.append(f"{name} goodput {ratio:.2f}x best static ({best}) [{'ok' if ratio >= 1.5 else 'MISS'} "
                             "1.5x]")
        if edf and ma:
            d = (ma["slo_attainment"] - edf["slo_attainment"]) * 100
            parts.append(f"memory-aware - edf SLO {d:+.1f} points [{'ok' if d >= -1e-9 else 'MISS'} never below"
                         + (f"; {'ok' if d >= 10 else 'MISS'} +10 where models do not fit" if pool != "fits" else "")
                         + "]")
        lines.append(" ".join(parts))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/serving_2026-12-07")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gpus", default="8,64")
    ap.add_argument("--profiles", default="H100,H200")
    ap.add_argument("--mixes", default="gfdit:qwen-image,gfdit:wan,gfdit",
                    help="workload mixes; gfdit alone draws Qwen-Image and Wan with equal odds")
    ap.add_argument("--pools", default="fits," + ",".join(MEMORY_POOLS),
                    help=f"fits (the profile's GPU) and/or {list(MEMORY_POOLS)} (--pool-profiles costs)")
    ap.add_argument("--pool-profiles", default="H100",
                    help="cost tables for the 48 / 24 / 80+24 GB pools (default H100; H200 = H200 compute and link "
                         "on GPUs of that memory, a hypothetical part)")
    ap.add_argument("--loads", default=",".join(map(str, LOADS)))
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--duration-error", type=float, default=0.0, metavar="SIGMA",
                    help="prediction error (SimConfig.duration_error): each task runs its predicted time x "
                         "exp(SIGMA x z), z drawn per (request, task); policies see the predictions (default 0)")
    ap.add_argument("--duration-seed", type=int, default=0, help="seed of the --duration-error draws")
    ap.add_argument("--checks", metavar="RESULTS_JSON", nargs="+",
                    help="print the target checks of earlier runs' results.json files and exit (simulates nothing)")
    args = ap.parse_args(argv)
    if args.checks:
        print("\n".join(checks([r for f in args.checks for r in json.loads(Path(f).read_text())])))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("cfcompile").setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(g) for g in args.gpus.split(",")]
    loads = [float(v) for v in args.loads.split(",")]
    policies = args.policies.split(",")
    results: list = []
    for mix in args.mixes.split(","):
        for pool in args.pools.split(","):
            for gpus in sizes:
                if pool == "fits":
                    for profile in args.profiles.split(","):
                        sweep(results, mix, profile, pool, gpus, (GPU_MEMORY_GB[profile],) * gpus, args.minutes,
                              args.seed, loads, policies, args.duration_error, args.duration_seed)
                else:
                    mem = parse_gpu_memory(MEMORY_POOLS[pool].format(half=gpus // 2), gpus)
                    for profile in args.pool_profiles.split(","):
                        sweep(results, mix, profile, pool, gpus, mem, args.minutes, args.seed, loads, policies,
                              args.duration_error, args.duration_seed)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    md = []
    for key in dict.fromkeys((r["mix"], r["profile"], r["pool"], r["gpus"]) for r in results):
        rows = [r for r in results if (r["mix"], r["profile"], r["pool"], r["gpus"]) == key]
        n = rows[0]["summary"]["requests"]
        md.append(f"### {key[0]}, {key[1]} costs, {key[3]} GPUs, "
                  f"{'full-size GPUs' if key[2] == 'fits' else key[2]} ({n} requests at load {rows[0]['load']})\n\n"
                  + table(rows) + "\n")
    cpu = sorted(r["summary"]["cpu_s"] for r in results if r["gpus"] == 64)
    if cpu:
        md.append(f"CPU seconds per 64-GPU {args.minutes:g}-minute simulation: median {cpu[len(cpu) // 2]:.1f}, "
                  f"max {cpu[-1]:.1f}\n")
    md.append("Targets:\n\n" + "\n".join(f"- {line}" for line in checks(results)) + "\n")
    (out / "results.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
