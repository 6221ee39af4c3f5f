"""serving18: the same (mix, costs, pool, GPUs, load, policy, seed 0, minutes) simulated before serving17 (serving16 /
16b folders) and now: SLO attainment before -> now where the summary differs, and how many are identical.

    python benchmarks/results/serving_2026-12-07/serving18/compare_before.py > .../compare_before.txt
"""
import json
from pathlib import Path

D = Path(__file__).resolve().parents[1]
OLD = ["qwen_64gpu_h100_all", "qwen_64gpu_h200", "qwen_64gpu_48gb_24gb", "qwen_64gpu_80+24gb", "wan_64gpu_h100_60min",
       "wan_64gpu_h100_60min_load1.2", "edf_triage_8gpu"]


def key(r, minutes):
    return (r["mix"], r["profile"], r["pool"], r["gpus"], r["load"], r["summary"]["policy"], minutes)


def minutes_of(folder):
    return 60 if "60min" in folder else 10


old = {}
for f in OLD:
    for r in json.loads((D / f / "results.json").read_text()):
        old[key(r, minutes_of(f))] = (f, r["summary"])
for f in ("qwen_8gpu_fits.json", "qwen_8gpu_memory_pools.json"):
    for r in json.loads((D / f).read_text()):
        if "summary" in r:
            old[key(r, 10)] = (f, r["summary"])
same, diff = 0, []
for res in sorted((D / "serving18").glob("*/results.json")):
    for r in json.loads(res.read_text()):
        k = key(r, minutes_of(res.parent.name))
        if k not in old:
            continue
        f, s0 = old[k]
        s1 = r["summary"]
        strip = lambda s: {a: b for a, b in s.items() if a != "cpu_s"}  # noqa: E731
        if strip(s0) == strip(s1):
            same += 1
        else:
            diff.append(f"{' '.join(map(str, k))}: {f} SLO {s0['slo_attainment']:.3f} met "
                        f"{round(s0['slo_attainment'] * s0['requests'])} -> {res.parent.name} {s1['slo_attainment']:.3f} "
                        f"met {round(s1['slo_attainment'] * s1['requests'])} (p95 {s0['latency_ms']['p95'] / 1e3:.1f} -> "
                        f"{s1['latency_ms']['p95'] / 1e3:.1f} s)")
print(f"{same} summaries identical to the earlier run (cpu_s aside), {len(diff)} differ:")
print("\n".join(diff))
