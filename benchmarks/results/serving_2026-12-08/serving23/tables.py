"""serving23: serving18's tables and its "Targets" table from this folder's results.json files, with serving18's
numbers beside them (nothing typed by hand).

    python benchmarks/results/serving_2026-12-08/serving23/tables.py > benchmarks/results/serving_2026-12-08/serving23/tables.md

Targets cell: ceiling (arrivals / best static goodput) / edf / memory-aware goodput over the best static; memory-aware
- edf in SLO points; [memory-aware now - memory-aware in serving18, SLO points]. Then every cell where memory-aware
is below edf, how many summaries are byte-identical to serving18's per policy, and the CPU / wall seconds.
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
S18 = HERE.parents[1] / "serving_2026-12-07" / "serving18"
ORDER = ("static-1", "static-2", "static-4", "static-8", "srtf", "edf", "edf-triage", "memory-aware",
         "memory-aware-notriage")
# serving18 took these rows of its 64-GPU Qwen-Image full-size tables from serving16b (tables.py there, EARLIER)
S18_EARLIER = [(S18.parent / "qwen_64gpu_h100_all" / "results.json", ORDER[:5]),
               (S18.parent / "qwen_64gpu_h200" / "results.json", ORDER[:5])]


def load(files, earlier=()):
    groups = {}
    for f, keep in earlier:
        for r in json.loads(Path(f).read_text()):
            if r["summary"]["policy"] in keep:
                groups.setdefault((r["mix"], r["profile"], r["pool"], r["gpus"]), {}).setdefault(r["load"], {})[
                    r["summary"]["policy"]] = r["summary"]
    for f in files:
        for r in json.loads(Path(f).read_text()):
            groups.setdefault((r["mix"], r["profile"], r["pool"], r["gpus"]), {}).setdefault(r["load"], {})[
                r["summary"]["policy"]] = r["summary"]
    return groups


def cell(s):
    pc = s["per_class"]
    cls = " / ".join("-" if pc.get(k) is None else f"{pc[k]['slo_attainment']:.2f}" for k in "SML")
    p95 = s["latency_ms"]["p95"]
    return f"{s['slo_attainment']:.3f} ({cls}) / {s['goodput_rps']:.3f} / {'-' if p95 is None else f'{p95 / 1e3:.1f}'}"


def name(key):
    mix, prof, pool, gpus = key
    return f"{mix}, {gpus} x {'80/141 GB' if pool == 'fits' else pool}, {prof}"


def met(s):
    return round(s["slo_attainment"] * s["requests"])


def strip(s):
    return {k: v for k, v in s.items() if k not in ("cpu_s", "wall_s")}


SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE  # another folder of runs (a check of this script)


def runs_here():
    """The grid's results.json files (not largest_single/: the timing re-run of one cell, identical summary)."""
    return sorted(p for p in SRC.glob("*/results.json") if p.parent.name != "largest_single")


def main():
    now = load(runs_here())
    before = load(sorted(S18.glob("*/results.json")), S18_EARLIER)
    out = []
    for key, by_load in now.items():
        loads = sorted(by_load)
        out.append(f"**{name(key)}** (requests: " + ", ".join(
            f"{l}: {next(iter(by_load[l].values()))['requests']:,}" for l in loads) + ")\n")
        out.append("| policy | " + " | ".join(f"load {l}" for l in loads) + " |")
        out.append("|---|" + "---|" * len(loads))
        for p in [p for p in ORDER if any(p in by_load[l] for l in loads)]:
            out.append(f"| {p} | " + " | ".join(cell(by_load[l][p]) if p in by_load[l] else "" for l in loads) + " |")
        out.append("")
    loads_all = sorted({l for by_load in now.values() for l in by_load})
    out.append("**Targets, every run** (goodput over the best static: ceiling / edf / memory-aware; memory-aware - edf "
               "in SLO points; [memory-aware now - serving18, SLO points]):\n")
    out.append("| run | " + " | ".join(f"load {l}" for l in loads_all) + " |")
    out.append("|---|" + "---|" * len(loads_all))
    below, missing = [], []
    for key, by_load in now.items():
        cells = []
        for l in loads_all:
            by = by_load.get(l, {})
            st = {p: s["goodput_rps"] for p, s in by.items() if p.startswith("static")}
            if not st or "edf" not in by or "memory-aware" not in by:
                cells.append("")
                continue
            b = max(st.values())
            any_s = next(iter(by.values()))
            r = (lambda n: f"{by[n]['goodput_rps'] / b:.2f}") if b else (lambda n: "inf" if by[n]["goodput_rps"] else "0")
            ceil = f"{any_s['requests'] / any_s['trace_s'] / b:.2f}" if b else "inf"
            ma, edf = by["memory-aware"], by["edf"]
            d = (ma["slo_attainment"] - edf["slo_attainment"]) * 100
            old = before.get(key, {}).get(l, {}).get("memory-aware")
            dd = "n/a" if old is None else f"{(ma['slo_attainment'] - old['slo_attainment']) * 100:+.1f}"
            if old is None:
                missing.append(f"{name(key)} load {l}")
            cells.append(f"{ceil} / {r('edf')} / {r('memory-aware')}x; {d:+.1f} [{dd}]")
            if met(ma) < met(edf) or ma["goodput_rps"] < edf["goodput_rps"]:
                below.append(f"- {name(key)}, load {l}: memory-aware {met(ma)} / edf {met(edf)} met of "
                             f"{ma['requests']} ({met(ma) - met(edf):+d} requests, {d:+.2f} SLO points, goodput "
                             f"{ma['goodput_rps']:.4f} vs {edf['goodput_rps']:.4f} rps"
                             + ("" if old is None else f"; serving18 memory-aware {met(old)}, edf "
                                f"{met(before[key][l]['edf'])}") + ")")
        out.append(f"| {name(key)} | " + " | ".join(cells) + " |")
    out.append("\n**memory-aware below edf** (goodput or SLO): " + ("none" if not below else "") + "\n")
    out.extend(below)
    if missing:
        out.append("\nNo serving18 memory-aware row for: " + "; ".join(missing))
    tens, short, capped = 0, [], 0
    for key, by_load in now.items():
        if key[2] == "fits":
            continue
        for l in sorted(by_load):
            by = by_load[l]
            if "edf" not in by or "memory-aware" not in by:
                continue
            e, m = by["edf"]["slo_attainment"] * 100, by["memory-aware"]["slo_attainment"] * 100
            if m - e >= 10:
                tens += 1
            elif 100 - e < 10:
                capped += 1
            else:
                short.append(f"{name(key)} load {l} {m - e:+.1f} (edf {e:.1f}, memory-aware {m:.1f})")
    out.append(f"\n**+10 SLO points where models do not fit** (48 / 24 / 80+24 GB pools): met in {tens} cells; "
               f"{capped} cells have edf within 10 points of 100% (no room); below +10 with room: "
               + ("; ".join(short) or "none") + ".")
    same, n = defaultdict(int), defaultdict(int)
    for key, by_load in now.items():
        for l, by in by_load.items():
            for p, s in by.items():
                old = before.get(key, {}).get(l, {}).get(p)
                if old is not None:
                    n[p] += 1
                    same[p] += strip(old) == strip(s)
    out.append("\n**Summaries identical to serving18's** (every field but CPU / wall seconds), per policy: "
               + ", ".join(f"{p} {same[p]}/{n[p]}" for p in ORDER if n[p]) + ".")
    runs = {f.parent.name: json.loads(f.read_text()) for f in runs_here()}
    out.append("\n**CPU seconds per folder** (sum / max per run; runs): " + "; ".join(
        f"{k} {sum(r['summary']['cpu_s'] for r in v):.0f} / {max(r['summary']['cpu_s'] for r in v):.1f} ({len(v)})"
        for k, v in runs.items()) + ".")
    ten = [(s["cpu_s"], s.get("wall_s"), k, r["load"], s["policy"], r["pool"], r["profile"])
           for k, v in runs.items() if "60min" not in k for r in v if r["gpus"] == 64 for s in [r["summary"]]]
    if ten:
        top = sorted(ten, reverse=True)[:3]
        out.append("\n**Largest 64-GPU 10-minute runs** (CPU s / wall s, in the grid, other processes on the "
                   "machine's 2 cores): " + "; ".join(f"{c:.1f} / {w} s {k} {pool} {prof} load {l} {p}"
                                                     for c, w, k, l, p, pool, prof in top) + ".")
    print("\n".join(out))


if __name__ == "__main__":
    main()
