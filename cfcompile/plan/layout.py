"""The chunk plan: which bytes stream, which stay resident, where they land, and when each copy is issued.

Input: the weights a graph reads (`analysis.WeightRead`, in Dynamo graph order) and the config. Output: a `Plan`,
a pure function of both, deterministic and JSON-serialisable, so every rank and every cache hit sees the same one.

    group (host, packed)   |--chunk 0--|--chunk 1--|--chunk 2--|--chunk 3-|
    resident_fraction=0.5   [resident  ][resident  ][ streamed  ][ streamed ]
                                    w2 straddles -> ^ it is streamed whole (weights stay contiguous); chunk 1 then counts as streamed
    device                  resident buffer [w0 w1]   arena region [w2 w3 ...] at arena_offset

Residency is chunk-granular: each group keeps a prefix of its chunks resident, the count spread over groups in
proportion to their size (largest remainder). Bytes of a group already on the device for another graph of the same
model (``held``) stay resident: the prefix is at least that long, and the group's device bytes are the hull of both.
A weight that crosses the resident/streamed boundary is streamed whole (it must be contiguous), so the chunk it
starts in is streamed too and counts as such (at most one per group).

Issue points: with ``prefetch_depth = d`` the prefetch of the j-th streamed group is issued right before the wait
of the (j-d)-th (or at the start of the graph for the first d). With ``wrap_around`` those first d are prefetched
for the next call in the tail of this one, before the wait of the (n+j-d)-th; the first call copies them at its
start. A group occupies its arena bytes from its issue
point to its last read; offsets are assigned first-fit over those intervals, which gives a ring of d+1 regions for a
chain of equal blocks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from ..config import ChunkFlowConfig
from ..pinned import align
from .ir import Chunk, Copy, GroupPlan, Plan, WeightPlan, WeightRead  # noqa: F401  (the IR, re-exported)
from .resolve import resolve


def resident_counts(sizes: list[int], fraction: float) -> list[int]:
    """Chunks kept resident per group: ``fraction`` of each, rounded so that the total is round(fraction*N)."""
    target = round(fraction * sum(sizes))
    ideal = [fraction * n for n in sizes]
    counts = [math.floor(x) for x in ideal]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(ideal[i] - counts[i]), i))
    for i in by_remainder[:target - sum(counts)]:
        counts[i] += 1
    return counts


def _first_fit(items: list[tuple[list[tuple[float, float]], int, str]]) -> tuple[list[int], dict[str, int]]:
    """Offsets for (live intervals, nbytes, arena) items, processed in order; bytes only shared by items whose
    intervals are disjoint. (A wrap-around group is live twice: from its issue in the previous call's tail to the
    end of the call, and from the start of the call to its last read.)"""
    placed: list[tuple[list[tuple[float, float]], int, int, str]] = []   # (intervals, offset, nbytes, arena)
    offsets, sizes = [], {}
    for spans, nbytes, arena in items:
        live = sorted((o, o + n) for sp, o, n, a in placed if a == arena and
                      any(s <= e2 and s2 <= e for s, e in spans for s2, e2 in sp))
        offset = 0
        for lo, hi in live:
            if offset + nbytes <= lo:
                break
            offset = max(offset, align(hi))
        placed.append((spans, offset, nbytes, arena))
        offsets.append(offset)
        sizes[arena] = max(sizes.get(arena, 0), offset + nbytes)
    return offsets, sizes


class Spec:
    """One group as the planner sees it: its reads, byte range and chunks; `split` is cached per resident count.

    ``held``: bytes of the group already on the device (resident for another graph of the same model). When they
    start at or before this graph's first read, the reads inside them are resident here too, at no new memory:
    ``n_held`` chunks are the least this graph keeps resident."""

    def __init__(self, key: str, reads: list[WeightRead], cs: int, held: tuple[int, int] | None = None):
        self.key, self.reads, self.cs = key, reads, cs
        self.dtype = str(reads[0].group.dtype).removeprefix("torch.")
        self.lo = min(r.offset for r in reads)
        self.hi = max(r.offset + r.nbytes for r in reads)
        self.chunk_ids = list(range(self.lo // cs, (self.hi - 1) // cs + 1))
        self.first = min(r.first_use for r in reads)
        self.last = max(r.last_use for r in reads)
        self.held = held if held and held[1] > held[0] else None
        self.floor = self.held[1] if self.held and self.held[0] <= self.lo < self.held[1] else self.lo
        # the fewest chunks whose boundary reaches the held bytes (as many as the graph that made them resident chose)
        self.n_held = 0 if self.floor <= self.lo else \
            next((n for n, c in enumerate(self.chunk_ids) if c * cs >= self.floor), len(self.chunk_ids))
        self._splits: dict[int, tuple] = {}

    def split(self, n_resident: int) -> tuple[list[WeightRead], list[WeightRead], tuple[int, int], tuple[int, int]]:
        """(resident reads, streamed reads, resident byte range, streamed byte range) with the first
        ``n_resident`` chunks chosen (never fewer than the held bytes); a weight crossing the boundary is streamed
        whole."""
        if n_resident not in self._splits:
            ids = self.chunk_ids
            boundary = self.hi if n_resident >= len(ids) else max(ids[n_resident] * self.cs, self.floor)
            resident = [r for r in self.reads if r.offset + r.nbytes <= boundary]
            streamed = [r for r in self.reads if r.offset + r.nbytes > boundary]
            rr = (min(r.offset for r in resident), max(r.offset + r.nbytes for r in resident)) if resident else (0, 0)
            sr = (min(r.offset for r in streamed), max(r.offset + r.nbytes for r in streamed)) if streamed else (0, 0)
            self._splits[n_resident] = (resident, streamed, rr, sr)
        return self._splits[n_resident]

    def device_range(self, n_resident: int) -> tuple[int, int]:
        """Bytes of the group on the device with ``n_resident`` chunks chosen: one copy per model and group, so the
        held bytes and this graph's resident ones together (their hull)."""
        _, _, (a, b), _ = self.split(n_resident)
        if self.held is None:
            return a, b
        return (min(a, self.held[0]), max(b, self.held[1])) if b > a else self.held

    def copies(self, n_resident: int) -> int:
        """Number of chunk copies of the streamed part."""
        _, _, _, (a, b) = self.split(n_resident)
        return 0 if b <= a else (b - 1) // self.cs - a // self.cs + 1

    def copy_sizes(self, n_resident: int) -> list[int]:
        """Bytes of each chunk copy of the streamed part, in order (as `build_plan` makes them)."""
        _, _, _, (a, b) = self.split(n_resident)
        cuts = [a, *range((a // self.cs + 1) * self.cs, b, self.cs), b]
        return [hi - lo for lo, hi in zip(cuts, cuts[1:]) if hi > lo]


@dataclasses.dataclass
class Layout:
    """Arena placement for one choice of resident counts and prefetch depths."""

    streamed: list[int]                 # spec indices with bytes to stream, in first-use order
    anchors: list[int | None]           # per streamed group: index into `streamed` whose wait it precedes
    wraps: list[int | None]             # per streamed group: the same in the previous call's tail (wrap-around)
    offsets: list[int]
    arena_sizes: dict[str, int]
    resident_sizes: dict[str, int]
    segments: dict = dataclasses.field(default_factory=dict)  # yield policy: see GroupPlan.segments
    doubles: dict = dataclasses.field(default_factory=dict)   # streamed index -> second region's offset

    @property
    def arena_bytes(self) -> int:
        return sum(self.arena_sizes.values())

    @property
    def resident_bytes(self) -> int:
        return sum(self.resident_sizes.values())


def lay_out(specs: list[Spec], counts: list[int], depths: dict[str, int], default_depth: int,
            wrap: bool = False) -> Layout:
    resident_sizes: dict[str, int] = {}
    streamed = []
    for i, (s, n) in enumerate(zip(specs, counts)):
        _, st, _, sr = s.split(n)
        lo, hi = s.device_range(n)
        if hi > lo:
            resident_sizes[s.dtype] = align(resident_sizes.get(s.dtype, 0) + hi - lo)
        if st:
            streamed.append(i)
    anchors, wraps, items, double = [], [], [], []
    n = len(streamed)
    everything = [(-math.inf, math.inf)]
    for j, i in enumerate(streamed):
        d = depths.get(specs[i].key, default_depth)
        anchor = j - d if j >= d else None
        # Wrap-around: a group with nothing to hide its copy in this call is prefetched in the tail of the previous
        # one, as far ahead as it would be otherwise (before the wait of the group d - j from the end). With no more
        # streamed groups than the depth (n + j - d <= j) that point is before its own reads: double buffering,
        # the next call's copy goes to a second region (both regions live for the whole call).
        wrap_anchor = None
        if wrap and anchor is None and d > 0:
            wrap_anchor = n + j - d if n + j - d > j else max(j - d + 1, 0)
            double.append(n + j - d <= j)
        else:
            double.append(False)
        anchors.append(anchor)
        wraps.append(wrap_anchor)
        _, _, _, (a, b) = specs[i].split(counts[i])
        if double[j]:
            items.append((everything, align(b - a), specs[i].dtype))
            continue
        issue = (specs[streamed[anchor]].first if anchor is not None else -1) - 0.5
        spans = [(issue, specs[i].last)]
        if wrap_anchor is not None:
            spans.append((specs[streamed[wrap_anchor]].first - 0.5, math.inf))
        items.append((spans, align(b - a), specs[i].dtype))
    seconds = [j for j in range(n) if double[j]]
    for j in seconds:
        items.append(items[j])
    offsets, arena_sizes = _first_fit(items)
    return Layout(streamed, anchors, wraps, offsets[:n], arena_sizes, resident_sizes,
                   doubles={j: offsets[n + k] for k, j in enumerate(seconds)})


def build_plan(specs: list[Spec], counts: list[int], layout: Layout, config: ChunkFlowConfig, cs: int,
           resident_fraction: float, depth: int, budget: int | None, segments: dict | None = None,
           policy: str = "overlap", schedule: str = "chunkflow") -> Plan:
    chunks: list[Chunk] = []
    res_offsets: dict[int, int] = {}
    used: dict[str, int] = {}
    for i, (s, n) in enumerate(zip(specs, counts)):
        _, _, rr, _ = s.split(n)
        if rr[1] > rr[0]:
            res_offsets[i] = used.get(s.dtype, 0)
            used[s.dtype] = align(res_offsets[i] + rr[1] - rr[0])
    where = {i: j for j, i in enumerate(layout.streamed)}
    groups, weights = [], []
    for i, (s, n) in enumerate(zip(specs, counts)):
        resident, _, rr, sr = s.split(n)
        # A chunk counts as resident when all of its bytes are: a chosen chunk whose tail belongs to the weight
        # that straddles the boundary is streamed with that weight.
        first_chunk = len(chunks)
        for c in s.chunk_ids:
            start, end = max(c * cs, s.lo), min((c + 1) * cs, s.hi)
            chunks.append(Chunk(len(chunks), s.key, start, end - start, rr[0] <= start and end <= rr[1]))
        j = where.get(i)
        arena_offset = layout.offsets[j] if j is not None else -1
        copies = []
        if j is not None:
            for c in chunks[first_chunk:]:
                lo, hi = max(c.start, sr[0]), min(c.start + c.nbytes, sr[1])
                if hi > lo:
                    copies.append(Copy(c.index, lo, arena_offset + lo - sr[0], hi - lo))
        groups.append(GroupPlan(
            key=s.key, dtype=s.dtype, first_use=s.first, last_use=s.last,
            chunks=tuple(range(first_chunk, len(chunks))), resident_range=rr, resident_offset=res_offsets.get(i, -1),
            stream_range=sr, arena_offset=arena_offset, copies=tuple(copies),
            issue_before=layout.anchors[j] if j is not None else None,
            wrap_before=layout.wraps[j] if j is not None else None,
            next_arena_offset=layout.doubles.get(j, -1) if j is not None else -1,
            segments=tuple((segments or {}).get(j, ()))))
        resident_ids = {id(r) for r in resident}
        for r in s.reads:
            if id(r) in resident_ids:
                loc, off = "resident", res_offsets[i] + r.offset - rr[0]
            else:
                loc, off = "arena", arena_offset + r.offset - sr[0]
            weights.append(WeightPlan(r.input_index, s.key, r.offset, r.nbytes, r.shape, r.stride, loc, off))
    host_groups = [s.reads[0].group for s in specs]
    host_bytes = sum(g.nbytes for g in host_groups)
    return Plan(cs, resident_fraction, depth, tuple(groups), tuple(chunks),
                tuple(sorted(weights, key=lambda w: w.input_index)),
                tuple(sorted(layout.arena_sizes.items())), tuple(sorted(layout.resident_sizes.items())), host_bytes,
                budget, policy, schedule, pinned_bytes=sum(g.nbytes for g in host_groups if g.pinned),
                weight_bytes=sum(g.weight_bytes for g in host_groups))


def specs_of(reads: Sequence[WeightRead], cs: int, held: dict[str, tuple[int, int]] | None = None) -> list[Spec]:
    by_group: dict[str, list[WeightRead]] = {}
    for r in sorted(reads, key=lambda r: (r.first_use, r.input_index)):
        by_group.setdefault(r.group.key, []).append(r)
    held = held or {}
    return [Spec(k, rs, cs, held.get(k)) for k, rs in by_group.items()]   # in order of first use


def streaming_floor(reads: Sequence[WeightRead], config: ChunkFlowConfig) -> dict[str, int]:
    """Arena bytes per dtype of the leanest plan the graph can run with, nothing resident (prefetch depth 0, or the
    fixed depth): what it needs to run again after its resident chunks are taken back (`runtime.budget`)."""
    specs = specs_of(reads, 2**50)   # nothing resident: the chunk size does not matter, one chunk per group is cheapest
    depth = resolve(config, budget=False).prefetch_depth or 0
    return lay_out(specs, [0] * len(specs), {}, depth, config.wrap_around).arena_sizes


def lean_arena(reads: Sequence[WeightRead], plan: Plan, config: ChunkFlowConfig) -> dict[str, int]:
    """Arena bytes per dtype of ``plan``'s lean variant (`compiler.backend`: the same graph with nothing resident,
    for blocks whose resident chunks do not fit a memory budget; same chunk size and prefetch depth): what a graph
    serving several blocks must leave room for before it keeps another block's chunks resident."""
    specs = specs_of(reads, plan.chunk_size)
    return lay_out(specs, [0] * len(specs), {}, plan.prefetch_depth, config.wrap_around).arena_sizes


def make_plan(reads: Sequence[WeightRead], config: ChunkFlowConfig) -> Plan:
    """The plan without a cost model: each group keeps a prefix of its chunks resident (``resident_fraction`` of
    them, spread in proportion to group size) and prefetches run ``prefetch_depth`` streamed groups ahead."""
    r = resolve(config, budget=False)
    (cs,), rf = r.chunk_sizes, r.resident_fraction
    specs = specs_of(reads, cs)
    counts = resident_counts([len(s.chunk_ids) for s in specs], rf)
    depth = 1 if r.prefetch_depth is None else r.prefetch_depth
    return build_plan(specs, counts, lay_out(specs, counts, {}, depth, config.wrap_around), config, cs, rf, depth, None)
