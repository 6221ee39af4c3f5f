"""serving18: the RESULTS.md tables from this folder's results.json files (nothing typed by hand).

    python benchmarks/results/serving_2026-12-07/serving18/tables.py > benchmarks/results/serving_2026-12-07/serving18/tables.md

One table per (mix, cost profile, pool, GPUs): a row per policy, a column per load; a cell is
SLO attainment (S / M / L) / goodput rps / p95 s. Under each table: requests per load, the goodput ceiling
(arrivals / best static goodput), edf and edf-triage goodput over the best static, memory-aware - edf in SLO points.
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("static-1", "static-2", "static-4", "static-8", "srtf", "edf", "edf-triage", "memory-aware",
         "memory-aware-notriage")


def cell(s):
    pc = s["per_class"]
    cls = " / ".join("-" if pc.get(k) is None else f"{pc[k]['slo_attainment']:.2f}" for k in "SML")
    p95 = s["latency_ms"]["p95"]
    return f"{s['slo_attainment']:.3f} ({cls}) / {s['goodput_rps']:.3f} / {'-' if p95 is None else f'{p95 / 1e3:.1f}'}"


# Rows of code serving17 did not change (static-k, srtf: no triage, no memory-aware), taken from serving16b's 64-GPU
# full-size runs so those tables have every policy; serving18's own rows come after them and win on the same key.
EARLIER = [(HERE.parent / "qwen_64gpu_h100_all" / "results.json", ("static-1", "static-2", "static-4", "static-8", "srtf")),
           (HERE.parent / "qwen_64gpu_h200" / "results.json", ("static-1", "static-2", "static-4", "static-8", "srtf"))]


def main(files):
    rows = []
    for f, keep in EARLIER:
        for r in json.loads(Path(f).read_text()):
            if r["summary"]["policy"] in keep:
                r["file"] = str(Path(f).parent.name)
                rows.append(r)
    for f in files:
        for r in json.loads(Path(f).read_text()):
            r["file"] = str(Path(f).parent.name)
            rows.append(r)
    groups = {}
    for r in rows:
        key = (r["mix"], r["profile"], r["pool"], r["gpus"])
        groups.setdefault(key, {}).setdefault(r["load"], {})[r["summary"]["policy"]] = (r["summary"], r["file"])
    out = []
    for (mix, prof, pool, gpus), by_load in groups.items():
        loads = sorted(by_load)
        files = sorted({f for by in by_load.values() for _, f in by.values()})
        pools = "full-size GPUs" if pool == "fits" else pool
        out.append(f"**{mix}, {gpus} x {pools}, {prof} costs** (`{'`, `'.join(files)}`). Requests: "
                   + ", ".join(f"{l}: {next(iter(by_load[l].values()))[0]['requests']:,}" for l in loads) + ".\n")
        out.append("| policy | " + " | ".join(f"load {l}" for l in loads) + " |")
        out.append("|---|" + "---|" * len(loads))
        pols = [p for p in ORDER if any(p in by_load[l] for l in loads)]
        for p in pols:
            out.append(f"| {p} | " + " | ".join(cell(by_load[l][p][0]) if p in by_load[l] else "" for l in loads)
                       + " |")
        chk = []
        for l in loads:
            by = {p: s for p, (s, _) in by_load[l].items()}
            st = {p: s["goodput_rps"] for p, s in by.items() if p.startswith("static")}
            parts = []
            if st:
                best = max(st, key=st.get)
                any_s = next(iter(by.values()))
                if st[best]:
                    parts.append(f"ceiling {any_s['requests'] / any_s['trace_s'] / st[best]:.2f}x")
                    for n in ("edf", "edf-triage", "memory-aware"):
                        if n in by:
                            parts.append(f"{n} {by[n]['goodput_rps'] / st[best]:.2f}x")
                    parts[0] = f"best static {best}, " + parts[0]
                else:
                    parts.append(f"best static goodput 0 ({best})")
            if "edf" in by and "memory-aware" in by:
                parts.append(f"memory-aware - edf {(by['memory-aware']['slo_attainment'] - by['edf']['slo_attainment']) * 100:+.1f} pts")
            chk.append(f"{l}: " + ", ".join(parts))
        cpu = [s["cpu_s"] for by in by_load.values() for s, _ in by.values()]
        out.append("\nChecks — " + "; ".join(chk) + f". CPU s per run {min(cpu):.1f}-{max(cpu):.1f}.\n")
    out.append("\n**Targets, every run above** (goodput over the best static: ceiling = arrivals / best static; "
               "edf / memory-aware; then memory-aware - edf in SLO points):\n")
    loads_all = sorted({l for by_load in groups.values() for l in by_load})
    out.append("| run | " + " | ".join(f"load {l}" for l in loads_all) + " |")
    out.append("|---|" + "---|" * len(loads_all))
    for (mix, prof, pool, gpus), by_load in groups.items():
        cells = []
        for l in loads_all:
            by = {p: s for p, (s, _) in by_load.get(l, {}).items()}
            st = {p: s["goodput_rps"] for p, s in by.items() if p.startswith("static")}
            if not st or "edf" not in by or "memory-aware" not in by:
                cells.append("")
                continue
            b = max(st.values())
            any_s = next(iter(by.values()))
            r = (lambda n: f"{by[n]['goodput_rps'] / b:.2f}") if b else (lambda n: "inf" if by[n]["goodput_rps"] else "0")
            ceil = f"{any_s['requests'] / any_s['trace_s'] / b:.2f}" if b else "inf"
            d = (by["memory-aware"]["slo_attainment"] - by["edf"]["slo_attainment"]) * 100
            cells.append(f"{ceil} / {r('edf')} / {r('memory-aware')}x; {d:+.1f}")
        pools = "80/141 GB" if pool == "fits" else pool
        out.append(f"| {mix}, {gpus} x {pools}, {prof} | " + " | ".join(cells) + " |")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(str(p) for p in HERE.glob("*/results.json")))
