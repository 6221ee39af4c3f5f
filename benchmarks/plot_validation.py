"""The measured memory-latency curve (with the cost model's predictions, dashed) from validate_costmodel.py rows.

    python benchmarks/plot_validation.py benchmarks/results/validate_flux_4096_h200.json --out flux_4096.png

One series for the resident-fraction sweep, one for the ``memory_budget`` runs; Inductor without offloading is a
point of its own. Needs the ``plot`` extra (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import sys

from cfcompile.report.visualize import plot_memory_latency


def rows_for_plot(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        if r.get("step_ms") is None or r.get("peak_alloc_gib") is None:
            continue  # a failed config
        cfg = r["config"]
        if cfg.startswith("inductor"):
            series, label = "Inductor, no offload", "all resident"
        elif "budget=" in cfg:
            series, label = "chunkflow memory_budget", cfg.split("budget=")[1]
        else:
            series, label = "chunkflow resident_fraction", cfg.split("rf=")[1].split()[0]
        out.append(dict(series=series, label=label, peak_gib=r["peak_alloc_gib"], step_ms=r["step_ms"],
                        predicted_step_ms=r.get("predicted_step_ms")))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", help="validate_<model>_<tokens>.json")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--title")
    args = p.parse_args()
    rows = json.load(open(args.json))
    r0 = rows[0]
    title = args.title or (f"{r0['model']} {r0['height']}x{r0['width']} ({r0['tokens']} image tokens), "
                           f"{r0.get('device', '')}, torch {r0.get('torch', '')}")
    print(plot_memory_latency(args.out, rows_for_plot(rows), title=title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
