"""What a compiled graph writes with ``options={"dump": DIR}`` (or ``CFCOMPILE_DUMP=DIR``).

    DIR/graph_000/plan.json              chunks, groups, issue points, arena / resident / host bytes
    DIR/graph_000/scheduled_graph.py     the post-grad graph after the chunkflow pass, as code
    DIR/graph_000/schedule.txt           one row per prefetch / wait / first and last read of each group
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import torch.fx as fx
from tabulate import tabulate

from .config import format_bytes
from .passes.plan import Plan

_counter = itertools.count()


def new_dump_dir(root: str) -> str:
    while True:
        d = Path(root) / f"graph_{next(_counter):03d}"
        if not d.exists():
            d.mkdir(parents=True)
            return str(d)


def write_plan(dump_dir: str, plan: Plan) -> None:
    with open(os.path.join(dump_dir, "plan.json"), "w") as f:
        json.dump(plan.to_json(), f, indent=1)


def schedule_table(schedule: list[dict]) -> str:
    """The schedule as a table; wait rows carry the cost model's prediction when there is one."""
    def predicted(r):
        p = r.get("prediction")
        if p is None:
            return ("", "", "", "")
        return (f"{p.copy_ms:.3f}", f"{p.cover_ms:.3f}", "yes" if p.hidden else "no", f"{p.stall_ms:.3f}")

    rows = [(r["node"], r["op"], r["group"], _ranges(r["chunks"]) if r["op"] == "prefetch" else "",
             _ranges(r["chunks"]) if r["op"] == "wait" else "", format_bytes(r["arena_in_use"]), *predicted(r))
            for r in schedule]
    return tabulate(rows, headers=["node", "op", "block", "chunks issued", "chunks waited", "arena bytes in use",
                                   "copy ms", "compute ms under it", "hidden?", "stall ms"])


def write_scheduled(dump_dir: str, graph: fx.Graph, schedule: list[dict], prediction=None) -> None:
    with open(os.path.join(dump_dir, "scheduled_graph.py"), "w") as f:
        f.write(graph.python_code("self").src)
    with open(os.path.join(dump_dir, "schedule.txt"), "w") as f:
        f.write(schedule_table(schedule) + "\n")
    if prediction is not None:
        with open(os.path.join(dump_dir, "prediction.json"), "w") as f:
            json.dump(prediction.to_json(), f, indent=1)


def _ranges(ids: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    out = []
    for _, run in itertools.groupby(enumerate(ids), key=lambda t: t[1] - t[0]):
        run = [v for _, v in run]
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
