"""What a simulation run reports: ``summary.json`` (SLO, goodput, latency, busy) and ``trace.json`` (Perfetto).

``summary.json`` keys: policy, gpus, requests, completed, slo_attainment (met / requests; a request without a
deadline meets it by completing), goodput_rps (requests that met their deadline per second of the trace: the
last arrival, or the makespan when all arrive at 0), throughput_rps (completed per second of the trace),
latency_ms {mean, p50, p95, p99}, per_class {class: {requests, slo_attainment, latency_ms}}, gpu_busy (busy
GPU-seconds, reshards and loads included, over gpus x makespan), reshards; and trace_s, makespan_s, model_loads,
streamed_tasks. ``trace.json`` is Chrome trace-event JSON: one track per GPU, a slice per task, reshard and load.
Floats are rounded and keys sorted, so the files are byte-identical across runs.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from .requests import RESHARD

if TYPE_CHECKING:
    from .simulator import Result

logger = logging.getLogger(__name__)


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd) + 0.0  # + 0.0: no "-0.0"


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolation percentile of sorted ``xs`` (numpy's default); nan for none."""
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _latency(ms: list[float]) -> dict:
    ms = sorted(ms)
    if not ms:
        return {"mean": None, "p50": None, "p95": None, "p99": None}
    return {"mean": _r(sum(ms) / len(ms)), **{f"p{q}": _r(percentile(ms, q)) for q in (50, 95, 99)}}


def summarize(result: "Result") -> dict:
    reqs, fin = result.requests, result.finish_s
    makespan = max(fin.values(), default=0.0)
    trace_s = max((r.arrival_s for r in reqs), default=0.0) or makespan
    met = {r.id for r in reqs if r.id in fin and (r.deadline_s is None or fin[r.id] <= r.deadline_s + 1e-9)}
    busy = sum((rec.end_s - rec.start_s) * len(rec.task.group) for rec in result.records)
    per_class = {}
    for k in sorted({r.klass for r in reqs}):
        rs = [r for r in reqs if r.klass == k]
        per_class[k] = {"requests": len(rs), "slo_attainment": _r(sum(r.id in met for r in rs) / len(rs), 6),
                        "latency_ms": _latency([(fin[r.id] - r.arrival_s) * 1e3 for r in rs if r.id in fin])}
    rate = (lambda n: _r(n / trace_s, 6)) if trace_s > 0 else (lambda n: 0.0)
    return {
        "policy": result.policy,
        "gpus": result.gpus,
        "requests": len(reqs),
        "completed": len(fin),
        "slo_attainment": _r(len(met) / len(reqs), 6) if reqs else 0.0,
        "goodput_rps": rate(len(met)),
        "throughput_rps": rate(len(fin)),
        "latency_ms": _latency([(fin[r.id] - r.arrival_s) * 1e3 for r in reqs if r.id in fin]),
        "per_class": per_class,
        "gpu_busy": _r(busy / (result.gpus * makespan), 6) if makespan > 0 else 0.0,
        "reshards": sum(rec.task.kind == RESHARD for rec in result.records),
        "trace_s": _r(trace_s),
        "makespan_s": _r(makespan),
        "model_loads": sum(len(rec.loads) for rec in result.records),
        "streamed_tasks": sum(rec.streamed for rec in result.records),
    }


def chrome_trace(result: "Result") -> dict:
    """Trace-event JSON: pid 0 = the pool, tid g = GPU g; ts and dur in microseconds."""
    us = lambda s: _r(s * 1e6)  # noqa: E731
    klass = {r.id: r.klass for r in result.requests}
    ev = [{"ph": "M", "pid": 0, "name": "process_name", "args": {"name": f"GPU pool ({result.policy})"}}]
    for g in range(result.gpus):
        ev.append({"ph": "M", "pid": 0, "tid": g, "name": "thread_name", "args": {"name": f"GPU {g}"}})
        ev.append({"ph": "M", "pid": 0, "tid": g, "name": "thread_sort_index", "args": {"sort_index": g}})
    for rec in result.records:
        t = rec.task
        args = {"request": t.request, "class": klass[t.request], "group": list(t.group), "sp": len(t.group)}
        if t.src is not None:
            args["src"] = list(t.src)
        if rec.streamed:
            args["streamed"] = True
        start = rec.start_s
        for g in t.group:
            if g in rec.loads:
                ev.append({"ph": "X", "pid": 0, "tid": g, "ts": us(start), "dur": us(rec.load_ms / 1e3),
                           "name": "load model", "cat": "load", "args": {"request": t.request}})
            ev.append({"ph": "X", "pid": 0, "tid": g, "ts": us(start + (rec.load_ms / 1e3 if g in rec.loads else 0)),
                       "dur": us(rec.end_s - start - (rec.load_ms / 1e3 if g in rec.loads else 0)),
                       "name": t.id, "cat": t.kind, "args": args})
    return {"displayTimeUnit": "ms", "traceEvents": ev}


def plot_timeline(result: "Result", path: Path) -> Path:
    """A PNG of the GPU tracks, colored by stage (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"text_encode": "tab:gray", "prepare": "tab:olive", "denoise": "tab:blue", "vae_decode": "tab:green",
              "reshard": "tab:red"}
    fig, ax = plt.subplots(figsize=(12, 1 + 0.25 * result.gpus))
    for kind, color in colors.items():
        bars: dict[int, list] = {}
        for rec in result.records:
            if rec.task.kind == kind:
                for g in rec.task.group:
                    bars.setdefault(g, []).append((rec.start_s, rec.end_s - rec.start_s))
        for g, b in bars.items():
            ax.broken_barh(b, (g - 0.4, 0.8), facecolors=color, label=kind if g == min(bars) else None)
    ax.set(xlabel="time (s)", ylabel="GPU", title=f"{result.policy} on {result.gpus} GPUs")
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_result(result: "Result", out_dir: Path, plot: bool = False) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summarize(result), indent=1, sort_keys=True) + "\n")
    (out_dir / "trace.json").write_text(json.dumps(chrome_trace(result), sort_keys=True, separators=(",", ":")))
    if plot:
        plot_timeline(result, out_dir / "timeline.png")
    logger.info("wrote %s", out_dir)
    return out_dir


__all__ = ["summarize", "chrome_trace", "plot_timeline", "write_result", "percentile"]
