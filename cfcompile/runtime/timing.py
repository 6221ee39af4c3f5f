"""Per-block timing of one call of a compiled graph, for calibrating the cost model (``calibrate=True``).

While a graph is being timed its ``wait_`` ops mark the compute stream right before and right after waiting
(CUDA events on the current stream; ``time.perf_counter`` on the CPU), and synchronous copies (CPU, or
``overlap_copies=False``) record how long they took, so the compute between two waits can be told apart from the
copies and stalls. The backend marks the call's start and end. Marks are keyed by slot address, like the events.
"""

from __future__ import annotations

import time

import torch

_active: dict[int, list] = {}   # slot pointer -> the marks list of the graph being timed


def start(slots: list[torch.Tensor]) -> list:
    marks: list = []
    for s in slots:
        _active[s.data_ptr()] = marks
    return marks


def marks_for(slot: torch.Tensor) -> list | None:
    return _active.get(slot.data_ptr()) if _active else None


def mark(marks: list, kind: str, event: int, device: torch.device) -> None:
    """Append (kind, event id, timestamp): a recorded CUDA event, or milliseconds of wall clock on the CPU."""
    if device.type == "cuda":
        ev = torch.cuda.Event(enable_timing=True)
        ev.record(torch.cuda.current_stream(device))
        marks.append((kind, event, ev))
    else:
        marks.append((kind, event, time.perf_counter() * 1e3))


def stop(slots: list[torch.Tensor], marks: list, device: torch.device) -> list[tuple[str, int, float]]:
    """Stop timing; the marks as (kind, event id, ms since the call's start). ``copy`` marks carry a duration."""
    for s in slots:
        _active.pop(s.data_ptr(), None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = marks[0][2]
    out = []
    for kind, event, t in marks:
        if kind == "copy":
            out.append((kind, event, t))
        elif device.type == "cuda":
            out.append((kind, event, t0.elapsed_time(t)))
        else:
            out.append((kind, event, t - t0))
    return out
