"""The first-order model: play the compute stream and the copy stream of one call forward, group by group.

    compute stream:  the graph's nodes in order, each taking its estimated time (`graph_costs`); at the first read
                     of a streamed group it waits until that group's copy is done (the *stall*)
    copy stream:     a group's copy starts when the copy stream is free *and* the compute stream has reached its
                     issue point (the copy waits for the work issued before it), and takes
                     latency * copies + bytes / H2D bandwidth

A prefetch is *hidden* when its copy is done before the compute stream reaches its first read; otherwise the stall
is the difference. The predicted step time is where the compute stream ends; peak memory is resident + arena +
peak activations. Issue points sit at the first read of another streamed group (or the start of the graph), which
is where the pass puts them, so this model and the scheduled graph agree on what runs under what.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from .profiles import DeviceProfile


@dataclasses.dataclass(frozen=True)
class GroupPrediction:
    index: int              # position in Plan.streamed (the prefetch's event id)
    key: str
    bytes: int
    copies: int
    compute_ms: float       # the block's own compute: from its first read to the next group's first read
    copy_ms: float
    issue_ms: float         # compute-stream time at the issue point
    start_ms: float         # when the copy starts (copy stream free and issue point reached)
    done_ms: float
    wait_ms: float          # compute-stream time when the first read is reached (before stalling)
    stall_ms: float

    @property
    def cover_ms(self) -> float:
        """Compute issued between the prefetch and the wait: what can hide the copy."""
        return self.wait_ms - self.issue_ms

    @property
    def hidden(self) -> bool:
        return self.stall_ms <= 1e-6


@dataclasses.dataclass(frozen=True)
class Prediction:
    profile: str
    step_ms: float
    compute_ms: float
    copy_ms: float
    stall_ms: float
    resident_bytes: int
    arena_bytes: int
    activation_bytes: int
    groups: tuple[GroupPrediction, ...]

    @property
    def peak_bytes(self) -> int:
        return self.resident_bytes + self.arena_bytes + self.activation_bytes

    @property
    def hidden(self) -> int:
        return sum(g.hidden for g in self.groups)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["peak_bytes"] = self.peak_bytes
        for g, p in zip(d["groups"], self.groups):
            g["hidden"], g["cover_ms"] = p.hidden, p.cover_ms
        return d

    def spans(self, blocks: Sequence[tuple[str, float, float]] = (),
              collectives: Sequence[tuple[str, float, float]] = ()):
        """The predicted timeline as `visualize.Span`s: compute blocks and collectives (``(name, start, end)`` in
        compute-only time, shifted by the stalls before them), stalls, and copies."""
        from ..visualize import Span

        stalls = sorted((g.wait_ms, g.stall_ms, g.key) for g in self.groups if g.stall_ms > 1e-6)
        out = []

        def shifted(t: float) -> float:  # compute-only time -> wall time on the compute stream
            return t + sum(s for w, s, _ in stalls if w <= t + 1e-9)

        for name, start, end in blocks:
            a, b = shifted(start), shifted(end)
            out.append(Span("compute", name, a, max(a, b - _stall_inside(stalls, start, end)), "block"))
        for name, start, end in collectives:
            out.append(Span("collective", name, shifted(start), shifted(start) + end - start, "all_to_all"))
        for w, s, key in stalls:
            t = shifted(w) - s
            out.append(Span("compute", f"wait {key}", t, t + s, "stall"))
        for g in self.groups:
            out.append(Span("h2d", g.key, g.start_ms, g.done_ms, "copy",
                            (("bytes", g.bytes), ("chunks", g.copies), ("hidden", g.hidden))))
        return out


def _stall_inside(stalls, start: float, end: float) -> float:
    return sum(s for w, s, _ in stalls if start < w <= end)


@dataclasses.dataclass(frozen=True)
class StreamedGroup:
    """What the model needs of one streamed group."""

    key: str
    first: int              # node index of its first read
    issue: int              # node index of its issue point (0 = start of the graph)
    bytes: int
    copies: int


def simulate(groups: Sequence[StreamedGroup], cumulative_ms: Sequence[float], profile: DeviceProfile, *,
             resident_bytes: int = 0, arena_bytes: int = 0, activation_bytes: int = 0) -> Prediction:
    """Predict one call. ``cumulative_ms[i]`` is the compute time of the nodes before node ``i``;
    ``groups`` are in `Plan.streamed` order (event ids)."""
    total = cumulative_ms[-1]
    # Events in graph order; at one node the pass puts prefetches before waits.
    events = sorted([(g.issue, 0, j) for j, g in enumerate(groups)] + [(g.first, 1, j) for j, g in enumerate(groups)])
    firsts = sorted({g.first for g in groups})
    next_first = {f: (firsts[k + 1] if k + 1 < len(firsts) else len(cumulative_ms) - 1) for k, f in enumerate(firsts)}
    stall = 0.0
    copy_free = 0.0
    issue_t, start_t, done_t, wait_t, stalls = {}, {}, {}, {}, {}
    for node, kind, j in events:
        now = cumulative_ms[node] + stall
        g = groups[j]
        if kind == 0:
            start_t[j] = max(copy_free, now)
            issue_t[j] = now
            copy_free = done_t[j] = start_t[j] + profile.copy_ms(g.bytes, g.copies)
        else:
            wait_t[j] = now
            stalls[j] = max(0.0, done_t[j] - now)
            stall += stalls[j]
    out = []
    for j, g in enumerate(groups):
        nxt = next_first[g.first]
        out.append(GroupPrediction(j, g.key, g.bytes, g.copies, cumulative_ms[nxt] - cumulative_ms[g.first],
                                   profile.copy_ms(g.bytes, g.copies), issue_t[j], start_t[j], done_t[j], wait_t[j],
                                   stalls[j]))
    return Prediction(profile.name, total + stall, total, sum(p.copy_ms for p in out), stall, resident_bytes,
                      arena_bytes, activation_bytes, tuple(out))
