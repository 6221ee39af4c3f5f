"""What a compiled graph writes with ``options={"dump": DIR}`` (or ``CFCOMPILE_DUMP=DIR``).

    DIR/graph_000/plan.json              chunks, groups, issue points, arena / resident / host bytes
    DIR/graph_000/scheduled_graph.py     the post-grad graph after the chunkflow pass, as code
    DIR/graph_000/schedule.txt           one row per prefetch / wait / first and last read of each group, with the
                                         cost model's copy ms, compute under it, hidden?, stall ms
    DIR/graph_000/prediction.json        the cost model's per-block and per-step prediction (time, memory)
    DIR/graph_000/timeline.json          the predicted timeline (compute, H2D copies, stalls); open in ui.perfetto.dev
    DIR/graph_000/timeline.png           the same as a picture (needs matplotlib: pip install 'cfcompile[plot]')
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path

import torch.fx as fx
from tabulate import tabulate

from ..config import format_bytes
from ..plan.ir import Plan

log = logging.getLogger(__name__)
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


def write_scheduled(dump_dir: str, graph: fx.Graph, schedule: list[dict]) -> None:
    with open(os.path.join(dump_dir, "scheduled_graph.py"), "w") as f:
        f.write(graph.python_code("self").src)
    with open(os.path.join(dump_dir, "schedule.txt"), "w") as f:
        f.write(schedule_table(schedule) + "\n")


def write_prediction(dump_dir: str, prediction, spans, title: str) -> list[str]:
    """prediction.json, timeline.json (Perfetto) and, with matplotlib, timeline.png. Returns the files written."""
    from .visualize import write_perfetto, write_timeline_png

    written = []
    path = os.path.join(dump_dir, "prediction.json")
    with open(path, "w") as f:
        json.dump(prediction.to_json(), f, indent=1)
    written.append(path)
    meta = {"profile": prediction.profile, "step_ms": prediction.step_ms, "peak_bytes": prediction.peak_bytes}
    written.append(str(write_perfetto(os.path.join(dump_dir, "timeline.json"), spans, title=title, metadata=meta)))
    try:
        written.append(str(write_timeline_png(
            os.path.join(dump_dir, "timeline.png"), spans, title=title,
            subtitle=f"predicted on {prediction.profile}: {prediction.step_ms:.1f} ms per call, peak "
                     f"{format_bytes(prediction.peak_bytes)} (resident {format_bytes(prediction.resident_bytes)}, "
                     f"arena {format_bytes(prediction.arena_bytes)}, activations "
                     f"{format_bytes(prediction.activation_bytes)})")))
    except ImportError as e:
        log.info("chunkflow: no timeline.png in %s: %s", dump_dir, e)
    return written


def _ranges(ids: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    out = []
    for _, run in itertools.groupby(enumerate(ids), key=lambda t: t[1] - t[0]):
        run = [v for _, v in run]
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
