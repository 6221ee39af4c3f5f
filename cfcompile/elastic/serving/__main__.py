"""``python -m cfcompile.elastic.serving``: generate a workload, simulate it, fit or dump a cost table.

    python -m cfcompile.elastic.serving workload --mix gfdit --gpus 8 --profile H100 --out w.jsonl
    python -m cfcompile.elastic.serving simulate w.jsonl --profile H100 --policy edf --policy memory-aware --out sim/
    python -m cfcompile.elastic.serving costs --out c.json [--refit rows.csv --model qwen-image --stage denoise]

``workload`` and ``simulate`` are ``cfcompile workload`` and ``cfcompile simulate``: the same options, defaults
and code (``commands.py``). ``costs`` here writes the synthetic table, optionally refit from ``tokens,degree,ms``
rows; ``cfcompile costs`` predicts one with plan_model.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .commands import (SIMULATE_DESCRIPTION, WORKLOAD_DESCRIPTION, add_simulate_arguments, add_workload_arguments,
                       run_simulate, run_workload)
from .costs import CostTable, refit, synthetic_costs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cfcompile.elastic.serving", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_workload_arguments(sub.add_parser("workload", help="write a generated workload as JSON lines",
                                          description=WORKLOAD_DESCRIPTION))
    add_simulate_arguments(sub.add_parser("simulate", help="simulate a workload under one or more policies",
                                          description=SIMULATE_DESCRIPTION))
    c = sub.add_parser("costs", help="write the synthetic cost table, optionally refit from measurements")
    c.add_argument("--refit", help="CSV of tokens,degree,ms rows")
    c.add_argument("--model", default="qwen-image")
    c.add_argument("--stage", default="denoise")
    c.add_argument("--base", help="table to start from (default: synthetic)")
    c.add_argument("--out", "-o", required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.cmd == "workload":
        return run_workload(args, f"{ap.prog} workload")
    if args.cmd == "simulate":
        return run_simulate(args, f"{ap.prog} simulate")
    table = CostTable.load(args.base) if args.base else synthetic_costs()
    if args.refit:
        rows = [tuple(float(v) for v in line.split(",")) for line in open(args.refit) if line.strip()
                and not line.lstrip().startswith(("#", "tokens"))]
        table = refit(table, args.model, [(x, int(d), ms) for x, d, ms in rows], args.stage)
    print(f"cost table -> {table.save(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
