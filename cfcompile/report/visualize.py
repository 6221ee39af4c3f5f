"""Pictures of a step: the predicted timeline and the memory-latency trade-off.

    write_perfetto(path, spans)          Chrome Trace Event JSON; open it in ui.perfetto.dev to zoom into every copy
    write_timeline_png(path, spans)      the same spans as a Gantt picture (one row per track) for reports
    plot_memory_latency(path, rows)      step time against peak memory, one line per offload method

The timeline writers are what the ``cfcompile plan`` command and the ``dump`` option use to write the predicted
timeline of the cost model; the benchmarks write the memory-latency curve. A timeline is a list of ``Span`` on
named tracks, one track per stream:

    compute     |block 0|block 1|stall|block 2|block 3| ...
    h2d         |c0|c1|c2|c3|c4|c5|c6|c7|       |c8|c9| ...
    collective          |all_to_all|            ...

matplotlib is optional (``pip install 'cfcompile[plot]'``): the PNG writers import it when called and draw on a
``Figure`` with the Agg canvas, so the user's pyplot backend is left alone. The JSON writer needs nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..costmodel.model import Span  # noqa: F401  (a timeline is a list of them)

log = logging.getLogger(__name__)

COMPUTE, H2D = "compute", "h2d"
COLLECTIVE_KINDS = frozenset({"all_to_all", "all_gather", "all_reduce", "reduce_scatter", "collective", "send", "recv"})

# colours: blocks alternate two blues, copies two oranges, stalls red, collectives purple, anything else grey
_BLOCK = ("#4c72b0", "#8fb0dd")
_COPY = ("#dd8452", "#f0b48c")
_STALL = "#d62728"
_COLLECTIVE = "#8172b3"
_OTHER = "#999999"


def track_order(spans: Iterable[Span]) -> list[str]:
    """The tracks present, in display order: compute, h2d, then the others sorted by name."""
    present = {s.track for s in spans}
    return [t for t in (COMPUTE, H2D) if t in present] + sorted(present - {COMPUTE, H2D})


def _display_name(s: Span) -> str:
    if s.kind == "stall" and not s.name.lower().startswith("stall"):
        return f"STALL {s.name}"
    return s.name


def _us(ms: float) -> float:
    return round(ms * 1000.0, 3)  # µs with ns resolution, no float noise in the file


def write_perfetto(path, spans: Iterable[Span], *, title: str = "cfcompile timeline",
                   metadata: dict | None = None) -> Path:
    """Write ``spans`` as Chrome Trace Event JSON (ui.perfetto.dev, chrome://tracing) and return the path.

    One process (pid 1) named ``title``, one thread per track (tid 1, 2, ... in ``track_order``), one complete
    event ("X", ts/dur in µs) per span; stalls are named ``STALL ...``. The same spans give the same bytes.
    """
    spans = list(spans)
    for s in spans:
        if not isinstance(s, Span):
            raise TypeError(f"write_perfetto expects Span objects, got {type(s).__name__}: {s!r}")
    tids = {t: i + 1 for i, t in enumerate(track_order(spans))}
    events: list[dict] = [{"ph": "M", "pid": 1, "tid": 0, "name": "process_name", "args": {"name": title}}]
    for t, tid in tids.items():
        events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": t}})
        events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}})
    xs = []
    for s in spans:
        ts = _us(s.start_ms)
        ev = {"ph": "X", "pid": 1, "tid": tids[s.track], "name": _display_name(s), "cat": s.kind or s.track,
              "ts": ts, "dur": round(_us(s.end_ms) - ts, 3), "args": dict(s.args)}
        if s.kind == "stall":
            ev["cname"] = "terrible"  # red in the legacy trace viewer
        xs.append(ev)
    # parents before children on a thread: by start, then longest first
    xs.sort(key=lambda e: (e["tid"], e["ts"], -e["dur"], e["name"]))
    doc = {"traceEvents": events + xs, "displayTimeUnit": "ms", "metadata": dict(metadata or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, sort_keys=True, indent=None, separators=(",", ":"), default=str,
                                allow_nan=False) + "\n")
    log.debug("wrote %s: %d spans on %d tracks", path, len(xs), len(tids))
    return path


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "cfcompile.report.visualize needs matplotlib to draw PNGs, and it is not installed: "
            "pip install 'cfcompile[plot]' (or pip install 'matplotlib>=3.8'). "
            "write_perfetto needs no extra packages.") from e
    return Figure, FigureCanvasAgg


def _save(fig, canvas_cls, path) -> Path:
    canvas_cls(fig)  # attach the Agg canvas to this figure only; pyplot's backend is untouched
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    log.debug("wrote %s", path)
    return path


def _colours(track: str, spans: list[Span]) -> list[str]:
    """One colour per span of one track (sorted by start); blocks and copies alternate with their neighbours."""
    out, nblock, ncopy = [], 0, 0
    for s in spans:
        if s.kind == "stall":
            out.append(_STALL)
        elif s.kind == "block":
            out.append(_BLOCK[nblock % 2])
            nblock += 1
        elif s.kind == "copy":
            out.append(_COPY[ncopy % 2])
            ncopy += 1
        elif s.kind in COLLECTIVE_KINDS or track not in (COMPUTE, H2D):
            out.append(_COLLECTIVE)
        else:
            out.append(_OTHER)
    return out


def write_timeline_png(path, spans: Iterable[Span], *, title: str, subtitle: str | None = None,
                       width_in: float = 14, dpi: int = 100) -> Path:
    """Draw ``spans`` as a Gantt chart (one row per track, time in ms) into a PNG and return the path."""
    Figure, Canvas = _matplotlib()
    from matplotlib.patches import Patch

    spans = list(spans)
    for s in spans:
        if not isinstance(s, Span):
            raise TypeError(f"write_timeline_png expects Span objects, got {type(s).__name__}: {s!r}")
    spans.sort(key=lambda s: (s.start_ms, s.end_ms))
    if not spans:
        raise ValueError("write_timeline_png: no spans to draw")
    tracks = track_order(spans)
    t0, t1 = min(s.start_ms for s in spans), max(s.end_ms for s in spans)
    extent = max(t1 - t0, 1e-9)

    fig = Figure(figsize=(width_in, 1.2 + 0.55 * len(tracks)), dpi=dpi)
    ax = fig.add_subplot()
    used: dict[str, str] = {}
    for row, track in enumerate(tracks):
        y = len(tracks) - 1 - row  # first track on top
        on = [s for s in spans if s.track == track]
        colours = _colours(track, on)
        for stalls in (False, True):  # stalls last, so they sit on top of what they interrupt
            idx = [i for i, s in enumerate(on) if (s.kind == "stall") == stalls]
            if not idx:
                continue
            ax.broken_barh([(on[i].start_ms, on[i].duration_ms) for i in idx], (y - 0.4, 0.8),
                           facecolors=[colours[i] for i in idx],
                           edgecolors=_STALL if stalls else "none", linewidths=0.6 if stalls else 0,
                           zorder=3 if stalls else 2)
        for s, c in zip(on, colours):
            label = {"block": "block", "copy": "H2D copy", "stall": "stall"}.get(s.kind)
            if label is None:
                label = (s.kind or s.track) if c == _COLLECTIVE else (s.kind or "other")
            used.setdefault(label, c)
            if s.duration_ms >= 0.04 * extent:  # room for a name
                ax.text(s.start_ms + s.duration_ms / 2, y, _display_name(s), ha="center", va="center",
                        fontsize=7, clip_on=True, zorder=4)

    ax.set_yticks(range(len(tracks)), labels=list(reversed(tracks)))
    ax.set_ylim(-0.6, len(tracks) - 0.4)
    ax.set_xlim(t0 - 0.01 * extent, t1 + 0.01 * extent)
    ax.set_xlabel("time (ms)")
    ax.grid(axis="x", alpha=0.3, zorder=0)
    ax.set_axisbelow(True)
    ax.set_title(title, fontsize=12, loc="left", pad=16 if subtitle else 6)
    if subtitle:
        ax.text(0, 1.01, subtitle, transform=ax.transAxes, fontsize=9, va="bottom", color="0.3")
    handles = [Patch(facecolor=c, edgecolor=_STALL if k == "stall" else "none", label=k) for k, c in used.items()]
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 1), ncol=len(handles), fontsize=8,
              frameon=False, borderaxespad=0.2)
    return _save(fig, Canvas, path)


def _check_rows(rows: Sequence[Mapping]) -> list[Mapping]:
    rows = list(rows)
    if not rows:
        raise ValueError("plot_memory_latency: no rows to draw")
    for i, r in enumerate(rows):
        missing = [k for k in ("label", "peak_gib", "step_ms") if k not in r]
        if missing:
            raise ValueError(f"plot_memory_latency: row {i} ({dict(r)!r}) lacks {missing}; "
                             "expected keys label, peak_gib, step_ms and optionally predicted_step_ms, series")
        for k in ("peak_gib", "step_ms", "predicted_step_ms"):
            v = r.get(k)
            if v is None and k == "predicted_step_ms":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"plot_memory_latency: row {i} ({r['label']!r}): {k} must be a finite number "
                                 f">= 0, got {v!r}")
    return rows


def plot_memory_latency(path, rows: Sequence[Mapping], *, title: str, dpi: int = 100) -> Path:
    """Plot step time (ms) against peak device memory (GiB), one line per ``series``; return the path.

    ``rows``: dicts with ``label``, ``peak_gib``, ``step_ms`` and optionally ``predicted_step_ms`` (drawn hollow,
    dashed) and ``series`` (e.g. "chunkflow", "layerwise", "no offload"; rows without one form one series).
    """
    Figure, Canvas = _matplotlib()
    from matplotlib.lines import Line2D

    rows = _check_rows(rows)
    groups: dict[str, list[Mapping]] = {}  # series in order of first appearance
    for r in rows:
        groups.setdefault(str(r.get("series") or ""), []).append(r)

    fig = Figure(figsize=(8, 5.5), dpi=dpi)
    ax = fig.add_subplot()
    cycle = [f"C{i}" for i in range(10)]
    any_predicted = False
    for n, (series, rs) in enumerate(groups.items()):
        c = cycle[n % len(cycle)]
        rs = sorted(rs, key=lambda r: (r["peak_gib"], r["step_ms"]))
        ax.plot([r["peak_gib"] for r in rs], [r["step_ms"] for r in rs], "o-", color=c, label=series or "measured",
                zorder=3)
        pred = [r for r in rs if r.get("predicted_step_ms") is not None]
        if pred:
            any_predicted = True
            ax.plot([r["peak_gib"] for r in pred], [r["predicted_step_ms"] for r in pred], "o--", color=c,
                    markerfacecolor="none", linewidth=0.8, alpha=0.8, zorder=2)
        for r in rs:
            ax.annotate(str(r["label"]), (r["peak_gib"], r["step_ms"]), xytext=(4, 4), textcoords="offset points",
                        fontsize=7)
    handles, _ = ax.get_legend_handles_labels()
    if any_predicted:
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="--",
                              linewidth=0.8, label="predicted"))
    ax.legend(handles=handles, fontsize=8)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("peak device memory (GiB)")
    ax.set_ylabel("step time (ms)")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return _save(fig, Canvas, path)
