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
from typing import TYPE_CHECKING, Sequence

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
        if rec.factor != 1.0:  # SimConfig.duration_error: actual / predicted compute time
            args["duration_factor"] = _r(rec.factor, 6)
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


COMPARISON_COLUMNS = ("policy", "completed", "SLO attainment", "goodput rps", "throughput rps", "p95 ms",
                      "reshards", "loads", "streamed tasks")


def comparison_rows(summaries: Sequence[dict]) -> list[dict]:
    """One row per policy run: the headline numbers and SLO attainment per class."""
    rows = []
    for s in summaries:
        p95 = s["latency_ms"]["p95"]
        row = {"policy": s["policy"], "completed": s["completed"], "SLO attainment": s["slo_attainment"],
               "goodput rps": s["goodput_rps"], "throughput rps": s["throughput_rps"],
               "p95 ms": None if p95 is None else round(p95), "reshards": s["reshards"],
               "loads": s["model_loads"], "streamed tasks": s["streamed_tasks"]}
        for k, c in sorted(s["per_class"].items()):
            row[f"SLO {k}"] = c["slo_attainment"]
        rows.append(row)
    return rows


def comparison_table(summaries: Sequence[dict], fmt: str = "simple") -> str:
    """The policies side by side (``tabulate`` format ``fmt``: simple for a terminal, github for markdown)."""
    from tabulate import tabulate

    rows = comparison_rows(summaries)
    headers = list(dict.fromkeys(k for r in rows for k in r))
    return tabulate([[r.get(h) for h in headers] for r in rows], headers=headers, tablefmt=fmt, floatfmt=".4g")


def plot_comparison(results: Sequence["Result"], path: Path) -> Path | None:
    """A PNG: latency CDF per policy (left) and SLO attainment per class and policy (right). None, with a log
    line saying what to install, when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        logger.warning("no plot %s: matplotlib is not installed (pip install matplotlib)", path)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cdf, slo) = plt.subplots(1, 2, figsize=(12, 4.5))
    summaries = [summarize(r) for r in results]
    for res in results:
        lat = sorted((res.finish_s[r.id] - r.arrival_s) for r in res.requests if r.id in res.finish_s)
        if lat:
            cdf.step(lat, [(i + 1) / len(res.requests) for i in range(len(lat))], where="post", label=res.policy)
    cdf.set(xscale="log", xlabel="latency (s)", ylabel="share of requests", title="latency CDF", ylim=(0, 1.02))
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize="small")
    classes = sorted({k for s in summaries for k in s["per_class"]})
    width = 0.8 / max(1, len(summaries))
    for i, s in enumerate(summaries):
        vals = [s["per_class"].get(k, {}).get("slo_attainment", 0.0) for k in classes] + [s["slo_attainment"]]
        slo.bar([j + i * width for j in range(len(classes) + 1)], vals, width, label=s["policy"])
    slo.set_xticks([j + 0.4 - width / 2 for j in range(len(classes) + 1)], classes + ["all"])
    slo.set(ylabel="SLO attainment", ylim=(0, 1.05), title="SLO attainment per class")
    slo.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{len(results[0].requests)} requests on {results[0].gpus} GPUs" if results else "")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_comparison(results: Sequence["Result"], out_dir: Path, plot: bool = True) -> list[Path]:
    """``<policy>/summary.json`` and ``trace.json`` each, then ``comparison.md``, ``comparison.json`` and (with
    matplotlib) ``comparison.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for res in results:
        write_result(res, out_dir / res.policy.replace(":", "_").replace("/", "_"))
    summaries = [summarize(r) for r in results]
    paths = [out_dir / "comparison.md", out_dir / "comparison.json"]
    head = f"{summaries[0]['requests']} requests on {summaries[0]['gpus']} GPUs\n\n" if summaries else ""
    paths[0].write_text(head + comparison_table(summaries, "github") + "\n")
    paths[1].write_text(json.dumps(comparison_rows(summaries), indent=1, sort_keys=True) + "\n")
    if plot and results:
        png = plot_comparison(results, out_dir / "comparison.png")
        if png is not None:
            paths.append(png)
    return paths


def write_result(result: "Result", out_dir: Path, plot: bool = False) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summarize(result), indent=1, sort_keys=True) + "\n")
    (out_dir / "trace.json").write_text(json.dumps(chrome_trace(result), sort_keys=True, separators=(",", ":")))
    if plot:
        plot_timeline(result, out_dir / "timeline.png")
    logger.info("wrote %s", out_dir)
    return out_dir


__all__ = ["summarize", "chrome_trace", "plot_timeline", "write_result", "percentile", "comparison_rows",
           "comparison_table", "plot_comparison", "write_comparison"]
