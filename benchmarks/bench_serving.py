"""Simulated elastic serving on the GF-DiT mix, costs predicted by plan_model (no GPU): the numbers behind the
"Elastic serving, simulated" section of RESULTS.md.

    python benchmarks/bench_serving.py --out benchmarks/results/serving_2026-12-07

Two sweeps, each a 10-minute trace of GF-DiT's mix (Qwen-Image and Wan, S/M/L, piecewise Poisson) per load:
  pools     8 and 64 GPUs of the H100 and H200 profiles (80 / 141 GB, every model fits), loads 0.6-1.2, policies
            static-1/2/4/8, srtf, edf, memory-aware
  memory    8 and 64 GPUs of 48 GB, of 24 GB and a mixed pool (half 80 GB, half 24 GB), H100 costs: pools where
            not every model fits (Qwen-Image's 58 GB pipeline fits no 48 GB GPU; nothing fits 24 GB)
Every workload is generated with the same profile's table (deadlines = arrival + alpha x predicted single-GPU time)
and simulated with it. Writes results.json (every summary, plus the CPU seconds of each run) and results.md (the
tables), and prints the target checks. A simulation runs on one core: its time is ``time.process_time()``.
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

POLICIES = ("static-1", "static-2", "static-4", "static-8", "srtf", "edf", "memory-aware", "memory-aware-notriage")
LOADS = (0.6, 0.8, 1.0, 1.2)
MEMORY_POOLS = {"48 GB": "48", "24 GB": "24", "80+24 GB": "80x{half},24x{half}"}


def run_one(reqs, gpus, policy, costs, mem) -> dict:
    t0 = time.process_time()
    s = simulate(reqs, gpus, policy, costs, SimConfig(mem_gb=mem)).summary
    s["cpu_s"] = round(time.process_time() - t0, 3)
    return s


def sweep(out: list, profile: str, pool: str, gpus: int, mem: tuple, minutes: float, seed: int, loads, policies):
    costs = shipped_costs(profile)
    for load in loads:
        reqs = generate_workload("gfdit", gpus=gpus, minutes=minutes, load=load, seed=seed, costs=costs)
        for p in policies:
            s = run_one(reqs, gpus, p, costs, mem)
            out.append({"profile": profile, "pool": pool, "gpus": gpus, "load": load, "summary": s})
            logger.info("%s %s %d GPUs load %.1f %-12s SLO %.3f goodput %.4f p95 %s ms (%.2f s)", profile, pool,
                        gpus, load, p, s["slo_attainment"], s["goodput_rps"], s["latency_ms"]["p95"], s["cpu_s"])


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
        groups.setdefault((r["profile"], r["pool"], r["gpus"], r["load"]), {})[r["summary"]["policy"]] = r["summary"]
    for (prof, pool, gpus, load), by in sorted(groups.items()):
        statics = {p: s["goodput_rps"] for p, s in by.items() if p.startswith("static")}
        best = max(statics, key=statics.get) if statics else None
        edf, ma = by.get("edf"), by.get("memory-aware")
        parts = [f"{prof} {pool} {gpus} GPUs load {load}:"]
        if best and edf:
            ratio = edf["goodput_rps"] / statics[best] if statics[best] else float("inf")
            parts.append(f"edf goodput {ratio:.2f}x best static ({best}) [{'ok' if ratio >= 1.5 else 'MISS'} 1.5x]")
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
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(g) for g in args.gpus.split(",")]
    results: list = []
    for profile in args.profiles.split(","):
        for gpus in sizes:
            sweep(results, profile, "fits", gpus, (GPU_MEMORY_GB[profile],) * gpus, args.minutes, args.seed,
                  LOADS, POLICIES)
    for name, spec in MEMORY_POOLS.items():
        for gpus in sizes:
            mem = parse_gpu_memory(spec.format(half=gpus // 2), gpus)
            sweep(results, "H100", name, gpus, mem, args.minutes, args.seed, LOADS, POLICIES)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    md = []
    for key in dict.fromkeys((r["profile"], r["pool"], r["gpus"]) for r in results):
        rows = [r for r in results if (r["profile"], r["pool"], r["gpus"]) == key]
        md.append(f"### {key[0]} costs, {key[2]} GPUs, {key[1] if key[1] != 'fits' else 'full-size GPUs'}\n\n"
                  + table(rows) + "\n")
    ten_min_64 = [r["summary"]["cpu_s"] for r in results if r["gpus"] == 64]
    md.append(f"CPU seconds per 64-GPU {args.minutes:g}-minute simulation: max {max(ten_min_64, default=0):.2f}, "
              f"median {sorted(ten_min_64)[len(ten_min_64) // 2] if ten_min_64 else 0:.2f}\n")
    md.append("Targets:\n\n" + "\n".join(f"- {line}" for line in checks(results)) + "\n")
    (out / "results.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
