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
import math
from collections.abc import Mapping
from typing import Sequence

from .profiles import DeviceProfile


@dataclasses.dataclass(frozen=True)
class Span:
    """One interval on one track of a timeline (times in ms from the start of the step)."""

    track: str
    """The row it is drawn on: ``"compute"``, ``"h2d"`` or a collective track such as ``"collective"``."""
    name: str
    """What ran, e.g. ``"block 3"`` or ``"chunk 17"``."""
    start_ms: float
    end_ms: float
    kind: str = ""
    """Picks the colour: ``"block"``, ``"copy"``, ``"stall"``, ``"all_to_all"``, ...; empty for anything else."""
    args: tuple[tuple[str, object], ...] = ()
    """Extra ``(key, value)`` pairs shown in Perfetto's details pane (bytes, group index, ...). A dict is accepted."""

    def __post_init__(self):
        for field in ("track", "name", "kind"):
            if not isinstance(getattr(self, field), str):
                raise TypeError(f"Span.{field} must be a str, got {getattr(self, field)!r}")
        if not self.track:
            raise ValueError(f"Span {self.name!r}: track must be non-empty (e.g. 'compute' or 'h2d')")
        for field in ("start_ms", "end_ms"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"Span {self.name!r}: {field} must be a number of ms, got {v!r}")
            if not math.isfinite(v):
                raise ValueError(f"Span {self.name!r}: {field} must be finite, got {v!r}")
            object.__setattr__(self, field, float(v))
        if self.end_ms < self.start_ms:
            raise ValueError(
                f"Span {self.name!r} on {self.track!r} ends before it starts "
                f"(start_ms={self.start_ms}, end_ms={self.end_ms}); expected end_ms >= start_ms")
        args = tuple(self.args.items()) if isinstance(self.args, Mapping) else tuple(self.args)
        keys = []
        for a in args:
            if not (isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], str)):
                raise TypeError(f"Span {self.name!r}: args must be (str, value) pairs, got {a!r}")
            keys.append(a[0])
        if len(set(keys)) != len(keys):
            raise ValueError(f"Span {self.name!r}: duplicate keys in args {keys}")
        object.__setattr__(self, "args", args)

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


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
    chunk_starts: tuple[float, ...] = ()  # when each chunk copy starts (a group's copies in order)

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
    windows: tuple[tuple[float, float], ...] = ()  # collective windows (launch .. wait done) on the compute stream
    pauses: tuple[tuple[float, float, str], ...] = ()
    """(compute-only ms, ms, what) of each delay of the compute stream in the reported call: a group's stall
    (``what`` = its key) or a collective slowed by copies (``"contention"``); maps compute-only time to wall time."""

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

    def spans(self, blocks: Sequence[tuple[str, float, float]] = ()):
        """The predicted timeline as `Span`s, all inside ``[0, step_ms]``: compute blocks (``(name,
        start, end)`` in compute-only time, moved by the pauses before them), stalls, copies, and the collectives'
        windows."""
        def wall(t: float, end: bool) -> float:
            # A stall at a block boundary belongs between the blocks; a slowed collective at the boundary
            # (its wait is the last node of the block) lengthens the block that ends there.
            return t + sum(ms for at, ms, what in self.pauses
                           if at < t - 1e-9 or (abs(at - t) <= 1e-9 and (not end or what == "contention")))

        out = [Span("compute", name, wall(start, False), max(wall(start, False), wall(end, True)), "block")
               for name, start, end in blocks]
        # the windows as the simulation played them (stalls and contention included)
        out.extend(Span("collective", "collective", lo, hi, "all_to_all") for lo, hi in self.windows)
        # wait_ms is already wall time (earlier stalls included): the stall starts there
        out.extend(Span("compute", f"wait {g.key}", g.wait_ms, g.wait_ms + g.stall_ms, "stall")
                   for g in self.groups if g.stall_ms > 1e-6)
        for g in self.groups:
            args = (("bytes", g.bytes), ("chunks", g.copies), ("hidden", g.hidden))
            if g.start_ms >= 0:
                out.append(Span("h2d", g.key, g.start_ms, g.done_ms, "copy", args))
                continue
            # Wrap-around: issued in the previous call's tail. In the steady state each call's tail issues it
            # for the next call, so the part before 0 is drawn at the end of this call.
            tail = args + (("for", "next call"),)
            out.append(Span("h2d", g.key, g.start_ms + self.step_ms, min(g.done_ms, 0.0) + self.step_ms, "copy",
                            tail))
            if g.done_ms > 0:
                out.append(Span("h2d", g.key, 0.0, g.done_ms, "copy", args))
        return out


@dataclasses.dataclass(frozen=True)
class StreamedGroup:
    """What the model needs of one streamed group."""

    key: str
    first: int              # node index of its first read
    issue: int              # node index of its issue point (0 = start of the graph)
    bytes: int
    copies: int
    wrap_issue: int | None = None   # wrap-around: node index of the issue point in the previous call's tail
    parts: tuple[tuple[int, int, int], ...] = ()  # copies split around collectives: (issue node, bytes, copies);
    #                                               the first part is issued at ``issue``


def simulate(groups: Sequence[StreamedGroup], cumulative_ms: Sequence[float], profile: DeviceProfile, *,
             resident_bytes: int = 0, arena_bytes: int = 0, activation_bytes: int = 0,
             windows: Sequence[tuple[int, int, float]] = ()) -> Prediction:
    """Predict one call in the steady state. ``cumulative_ms[i]`` is the compute time of the nodes before node
    ``i``; ``groups`` are in `Plan.streamed` order (event ids).

    With wrap-around two calls are played back to back: the first copies the wrapped groups at its start (nothing
    was prefetched for it), its tail prefetches them for the second, and the second is the one reported (times
    relative to its start; a copy issued in the previous call starts before 0).

    ``windows``: (launch node, node after the wait, ms) of each collective; its time is in ``cumulative_ms`` (charged
    to the wait node). Where collectives share the PCIe path with host copies (``profile.link_shares_h2d``), a
    collective with copies in flight takes ``contention_collective`` times as long for the share of its window they
    cover, and those copies ``contention_copy`` times as long."""
    n_nodes, total = len(cumulative_ms) - 1, cumulative_ms[-1]
    calls = 2 if any(g.wrap_issue is not None for g in groups) else 1
    events: list = []  # (global node, kind, group or window, the call the copy is for, part)
    for c in range(calls):
        base = c * (n_nodes + 1)
        for j, g in enumerate(groups):
            events.append((base + g.first, 1, j, c, 0))
            if g.wrap_issue is None:
                parts = g.parts or ((g.issue, g.bytes, g.copies),)
                events.extend((base + node, 0, j, c, k) for k, (node, _, _) in enumerate(parts))
            elif c == 0:
                events.append((base + 0, 0, j, c, 0))      # first call: copied at its start
            if g.wrap_issue is not None and c + 1 < calls:
                events.append((base + g.wrap_issue, 0, j, c + 1, 0))
        # At one node: a collective's wait completes (-1) before copies issued there (0), which come before a
        # collective launched there (0.5), before a group's wait (1).
        for w, (launch, after, _) in enumerate(windows):
            events += [(base + launch, 0.5, w, c, 0), (base + after, -1, w, c, 0)]
    events.sort()
    stall = 0.0
    copy_free = 0.0
    issue_t, start_t, done_t, wait_t, stalls = {}, {}, {}, {}, {}
    chunk_t: dict = {}
    copying: list[list] = []    # [start, end, (group, call)] of each copy part, for contention
    opened: dict = {}
    window_t = []
    pauses = []                 # (call, compute-only ms, ms, what)
    stall_at_start: dict[int, float] = {}
    for pos, kind, j, c, k in events:
        call, node = divmod(pos, n_nodes + 1)
        stall_at_start.setdefault(call, stall)
        now = call * total + cumulative_ms[node] + stall
        if kind == 0.5:
            opened[j, call] = now
            continue
        if kind == -1:
            lo = opened.get((j, call), now)
            if profile.link_shares_h2d and now > lo:
                busy = sum(max(0.0, min(e, now) - max(s, lo)) for s, e, _ in copying)
                if busy > 0:
                    extra = windows[j][2] * (profile.contention_collective - 1) * min(1.0, busy / (now - lo))
                    stall += extra
                    now += extra
                    pauses.append((call, cumulative_ms[node], extra, "contention"))
                    slow = busy * (profile.contention_copy - 1)
                    for part in copying:   # copies in flight or queued after the window start are delayed
                        if part[1] > lo:
                            part[1] += slow
                            done_t[part[2]] = max(done_t[part[2]], part[1])
                    copy_free += slow if copy_free > lo else 0.0
            window_t.append((call, lo, now))
            continue
        g = groups[j]
        if kind == 0:
            nbytes, copies = (g.parts[k][1], g.parts[k][2]) if g.parts and g.wrap_issue is None else (g.bytes, g.copies)
            start = max(copy_free, now)
            if (j, c) not in start_t:
                start_t[j, c], issue_t[j, c] = start, now
            per_chunk = profile.copy_ms(nbytes, copies) / max(copies, 1)
            chunk_t.setdefault((j, c), []).extend(start + per_chunk * m for m in range(copies))
            copy_free = done_t[j, c] = start + profile.copy_ms(nbytes, copies)
            copying.append([start, copy_free, (j, c)])
        else:
            wait_t[j, c] = now
            stalls[j, c] = max(0.0, done_t[j, c] - now)
            stall += stalls[j, c]
            if stalls[j, c] > 0:
                pauses.append((call, cumulative_ms[node], stalls[j, c], g.key))
    last = calls - 1
    t0 = last * total + stall_at_start.get(last, 0.0)     # start of the reported call
    step_stall = stall - stall_at_start.get(last, 0.0)    # stalls on copies and collectives slowed by copies
    firsts = sorted({g.first for g in groups})
    next_first = {f: (firsts[k + 1] if k + 1 < len(firsts) else n_nodes) for k, f in enumerate(firsts)}
    out = []
    for j, g in enumerate(groups):
        nxt = next_first[g.first]
        out.append(GroupPrediction(j, g.key, g.bytes, g.copies, cumulative_ms[nxt] - cumulative_ms[g.first],
                                   profile.copy_ms(g.bytes, g.copies), issue_t[j, last] - t0,
                                   start_t[j, last] - t0, done_t[j, last] - t0, wait_t[j, last] - t0,
                                   stalls[j, last], tuple(t - t0 for t in chunk_t.get((j, last), ()))))
    spans = tuple((lo - t0, hi - t0) for call, lo, hi in window_t if call == last)
    return Prediction(profile.name, total + step_stall, total, sum(p.copy_ms for p in out), step_stall,
                      resident_bytes, arena_bytes, activation_bytes, tuple(out), spans,
                      tuple((at, ms, what) for call, at, ms, what in pauses if call == last))
