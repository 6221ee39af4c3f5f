"""Scale the per-node estimates to one timed call of the compiled graph (``calibrate=True``).

The timed call gives, on the compute stream, the time between consecutive ``wait_`` ops (see `runtime.timing`):

    start ..[I0].. before-wait j0 | after-wait j0 ..[I1].. before-wait j1 | ... | after-wait jn ..[In].. end

Each interval is compute only (stalls sit between before- and after-wait; synchronous copies are subtracted). The
waits sit at the first reads of streamed groups, so interval I_k covers the Dynamo nodes from the previous waited
group's first read to this one's. Every node estimate in that range is multiplied by measured / estimated.
"""

from __future__ import annotations

import dataclasses

from ..plan.ir import Plan
from ..costmodel.graph_costs import GraphCosts


def calibrated_costs(costs: GraphCosts, plan: Plan, marks: list[tuple[str, int, float]]) -> tuple[GraphCosts, dict]:
    """``marks``: (kind, event id, ms since the call's start) from `runtime.timing.stop`."""
    streamed = plan.streamed
    n = len(costs.node_ms)
    # Boundaries in time (compute-only intervals) and in Dynamo node index.
    intervals = []          # (node from, node to, measured ms)
    t_prev, node_prev, copies = None, 0, 0.0
    for kind, event, t in marks:
        if kind == "start":
            t_prev, node_prev, copies = t, 0, 0.0
        elif kind == "copy":
            copies += t
        elif kind == "before-wait":
            node = streamed[event].first_use
            intervals.append((node_prev, node, t - t_prev - copies))
            node_prev, copies = node, 0.0
        elif kind == "after-wait":
            t_prev = t
        elif kind == "end":
            intervals.append((node_prev, n, t - t_prev - copies))
    scale = [1.0] * n
    added = [0.0] * n
    rows = []
    for lo, hi, measured in intervals:
        if hi <= lo:
            continue
        measured = max(measured, 0.0)
        estimated = sum(costs.node_ms[lo:hi])
        factor = measured / estimated if estimated > 1e-9 else None
        for i in range(lo, hi):
            scale[i] = factor if factor is not None else 0.0
            if factor is None:  # nothing estimated here (e.g. the inputs' preparation): spread what was measured
                added[i] = measured / (hi - lo)
        rows.append(dict(nodes=(lo, hi), measured_ms=measured, estimated_ms=estimated, factor=factor))
    node_ms = tuple(ms * f + a for ms, f, a in zip(costs.node_ms, scale, added))
    report = dict(intervals=rows, measured_compute_ms=sum(r["measured_ms"] for r in rows),
                  estimated_compute_ms=costs.total_ms)
    return dataclasses.replace(costs, node_ms=node_ms), report
