"""``python -m cfcompile.elastic.serving``: generate a workload, simulate it, fit or dump a cost table.

    python -m cfcompile.elastic.serving workload --mix gfdit --gpus 8 --minutes 10 --load 1.0 --seed 0 -o w.jsonl
    python -m cfcompile.elastic.serving simulate w.jsonl --gpus 8 --policy edf -o out/ [--costs c.json] [--plot]
    python -m cfcompile.elastic.serving costs -o c.json [--refit rows.csv --model qwen-image --stage denoise]

(``cfcompile.cli`` can wrap these; rows.csv holds ``tokens,degree,ms`` lines.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .costs import CostTable, refit, synthetic_costs
from .simulator import SimConfig, simulate
from .workload import MIXES, generate_workload, read_workload, write_workload


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cfcompile.elastic.serving", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("workload", help="write a generated workload as JSON lines")
    w.add_argument("--mix", default="gfdit", help=f"{sorted(MIXES)}, optionally :<model>")
    w.add_argument("--gpus", type=int, default=8)
    w.add_argument("--minutes", type=float, default=10.0)
    w.add_argument("--load", type=float, default=1.0)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("-o", "--out", required=True)
    s = sub.add_parser("simulate", help="simulate a workload; writes summary.json and trace.json")
    s.add_argument("workload")
    s.add_argument("--gpus", type=int, default=8)
    s.add_argument("--policy", default="edf", help="static-<k>, fcfs, srtf, edf, preempt or module:factory")
    s.add_argument("--costs", help="cost table JSON (default: the synthetic one)")
    s.add_argument("--chunk-steps", type=int, default=5)
    s.add_argument("--mem-gb", type=float, default=96.0)
    s.add_argument("--plot", action="store_true")
    s.add_argument("-o", "--out", required=True)
    c = sub.add_parser("costs", help="write the synthetic cost table, optionally refit from measurements")
    c.add_argument("--refit", help="CSV of tokens,degree,ms rows")
    c.add_argument("--model", default="qwen-image")
    c.add_argument("--stage", default="denoise")
    c.add_argument("--base", help="table to start from (default: synthetic)")
    c.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.cmd == "workload":
        reqs = generate_workload(args.mix, args.gpus, args.minutes, args.load, args.seed)
        print(f"{len(reqs)} requests -> {write_workload(reqs, args.out)}")
    elif args.cmd == "simulate":
        costs = CostTable.load(args.costs) if args.costs else synthetic_costs()
        cfg = SimConfig(chunk_steps=args.chunk_steps, mem_gb=args.mem_gb)
        res = simulate(read_workload(args.workload), args.gpus, args.policy, costs, cfg)
        res.write(args.out, plot=args.plot)
        print(json.dumps(res.summary, indent=1, sort_keys=True))
    else:
        table = CostTable.load(args.base) if args.base else synthetic_costs()
        if args.refit:
            rows = [tuple(float(v) for v in line.split(",")) for line in open(args.refit) if line.strip()
                    and not line.lstrip().startswith(("#", "tokens"))]
            table = refit(table, args.model, [(x, int(d), ms) for x, d, ms in rows], args.stage)
        print(f"cost table -> {table.save(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
