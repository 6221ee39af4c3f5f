"""The chunk plan: which bytes stream, which stay resident, where they land, and when each copy is issued.

Input: the weights a graph reads (`analysis.WeightRead`, in Dynamo graph order) and the config. Output: a `Plan`,
a pure function of both, deterministic and JSON-serialisable, so every rank and every cache hit sees the same one.

    group (host, packed)   |--chunk 0--|--chunk 1--|--chunk 2--|--chunk 3-|
    resident_fraction=0.5   [resident  ][resident  ][ streamed  ][ streamed ]
                                    w2 straddles -> ^ it is streamed whole (weights stay contiguous); chunk 1 then counts as streamed
    device                  resident buffer [w0 w1]   arena region [w2 w3 ...] at arena_offset

Residency is chunk-granular: each group keeps a prefix of its chunks resident, the count spread over groups in
proportion to their size (largest remainder). A weight that crosses the resident/streamed boundary is streamed whole
(it must be contiguous), so the chunk it starts in is streamed too and counts as such (at most one per group).

Issue points: with ``prefetch_depth = d`` the prefetch of the j-th streamed group is issued right before the wait
of the (j-d)-th (or at the start of the graph for the first d). A group occupies its arena bytes from its issue
point to its last read; offsets are assigned first-fit over those intervals, which gives a ring of d+1 regions for a
chain of equal blocks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Sequence

from ..config import ALIGN, ChunkFlowConfig
from .analysis import WeightRead


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclasses.dataclass(frozen=True)
class Chunk:
    index: int
    group: str
    start: int            # bytes into the group
    nbytes: int
    resident: bool


@dataclasses.dataclass(frozen=True)
class Copy:
    chunk: int
    src_offset: int       # bytes into the group
    dst_offset: int       # bytes into the arena
    nbytes: int


@dataclasses.dataclass(frozen=True)
class GroupPlan:
    key: str
    dtype: str
    first_use: int
    last_use: int
    chunks: tuple[int, ...]
    resident_range: tuple[int, int]     # bytes of the group kept on the device ([0, 0) if none)
    resident_offset: int                # where they sit in the resident buffer
    stream_range: tuple[int, int]       # bytes of the group copied every call ([0, 0) if none)
    arena_offset: int                   # where they land in the arena (-1 if nothing streams)
    copies: tuple[Copy, ...]
    issue_before: int | None            # index into Plan.streamed of the group whose wait the prefetch precedes;
    #                                     None = at the start of the graph

    @property
    def streamed_bytes(self) -> int:
        return self.stream_range[1] - self.stream_range[0]

    @property
    def resident_bytes(self) -> int:
        return self.resident_range[1] - self.resident_range[0]


@dataclasses.dataclass(frozen=True)
class WeightPlan:
    input_index: int
    group: str
    offset: int                         # bytes into the group
    nbytes: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    location: str                       # "arena" or "resident"
    buffer_offset: int                  # bytes into the arena / resident buffer of the group's dtype


@dataclasses.dataclass(frozen=True)
class Plan:
    chunk_size: int
    resident_fraction: float
    prefetch_depth: int
    groups: tuple[GroupPlan, ...]       # in order of first use
    chunks: tuple[Chunk, ...]
    weights: tuple[WeightPlan, ...]
    arena_bytes: tuple[tuple[str, int], ...]      # per dtype
    resident_bytes: tuple[tuple[str, int], ...]   # per dtype
    host_bytes: int                     # bytes of the host groups this graph reads from

    @property
    def streamed(self) -> tuple[GroupPlan, ...]:
        """Groups with bytes to copy every call, in issue order; a prefetch's event id is its index here."""
        return tuple(g for g in self.groups if g.streamed_bytes)

    @property
    def streamed_bytes(self) -> int:
        return sum(g.streamed_bytes for g in self.groups)

    @property
    def total_arena_bytes(self) -> int:
        return sum(n for _, n in self.arena_bytes)

    @property
    def total_resident_bytes(self) -> int:
        return sum(n for _, n in self.resident_bytes)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["arena_bytes"], d["resident_bytes"] = dict(self.arena_bytes), dict(self.resident_bytes)
        d["summary"] = {"groups": len(self.groups), "chunks": len(self.chunks),
                        "resident_chunks": sum(c.resident for c in self.chunks),
                        "streamed_bytes_per_call": self.streamed_bytes,
                        "arena_bytes": self.total_arena_bytes, "resident_bytes": self.total_resident_bytes,
                        "host_bytes": self.host_bytes}
        return d

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def _resident_counts(sizes: list[int], fraction: float) -> list[int]:
    """Chunks kept resident per group: ``fraction`` of each, rounded so that the total is round(fraction*N)."""
    target = round(fraction * sum(sizes))
    ideal = [fraction * n for n in sizes]
    counts = [math.floor(x) for x in ideal]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(ideal[i] - counts[i]), i))
    for i in by_remainder[:target - sum(counts)]:
        counts[i] += 1
    return counts


def _first_fit(intervals: list[tuple[float, int, int, str]]) -> tuple[list[int], dict[str, int]]:
    """Offsets for (start, end, nbytes, arena) intervals, processed in order; bytes only shared when disjoint."""
    placed: list[tuple[float, int, int, int, str]] = []   # (start, end, offset, nbytes, arena)
    offsets, sizes = [], {}
    for start, end, nbytes, arena in intervals:
        live = sorted((o, o + n) for s, e, o, n, a in placed if a == arena and s <= end and start <= e)
        offset = 0
        for lo, hi in live:
            if offset + nbytes <= lo:
                break
            offset = max(offset, _align(hi))
        placed.append((start, end, offset, nbytes, arena))
        offsets.append(offset)
        sizes[arena] = max(sizes.get(arena, 0), offset + nbytes)
    return offsets, sizes


def make_plan(reads: Sequence[WeightRead], config: ChunkFlowConfig) -> Plan:
    cs = config.chunk_size
    by_group: dict[str, list[WeightRead]] = {}
    for r in sorted(reads, key=lambda r: (r.first_use, r.input_index)):
        by_group.setdefault(r.group.key, []).append(r)
    keys = list(by_group)   # order of first use

    # Chunks: fixed-size slices of each group, those that hold a byte the graph reads.
    chunk_ranges: dict[str, list[int]] = {}
    for k in keys:
        lo = min(r.offset for r in by_group[k])
        hi = max(r.offset + r.nbytes for r in by_group[k])
        chunk_ranges[k] = list(range(lo // cs, (hi - 1) // cs + 1))
    counts = _resident_counts([len(chunk_ranges[k]) for k in keys], config.resident_fraction)

    chunks: list[Chunk] = []
    drafts = []
    resident_sizes: dict[str, int] = {}
    for k, n_resident in zip(keys, counts):
        rs = by_group[k]
        dtype = str(rs[0].group.dtype).removeprefix("torch.")
        lo = min(r.offset for r in rs)
        hi = max(r.offset + r.nbytes for r in rs)
        ids = chunk_ranges[k]
        boundary = hi if n_resident == len(ids) else max(ids[n_resident] * cs, lo)
        resident = [r for r in rs if r.offset + r.nbytes <= boundary]
        streamed = [r for r in rs if r.offset + r.nbytes > boundary]
        res_range = (min(r.offset for r in resident), max(r.offset + r.nbytes for r in resident)) if resident else (0, 0)
        # A chunk counts as resident when all of its bytes are: a chosen chunk whose tail belongs to the weight
        # that straddles the boundary is streamed with that weight.
        first_chunk = len(chunks)
        for i in ids:
            start, end = max(i * cs, lo), min((i + 1) * cs, hi)
            chunks.append(Chunk(len(chunks), k, start, end - start, res_range[0] <= start and end <= res_range[1]))
        res_offset = resident_sizes.get(dtype, 0)
        if resident:
            resident_sizes[dtype] = _align(res_offset + res_range[1] - res_range[0])
        st_range = (min(r.offset for r in streamed), max(r.offset + r.nbytes for r in streamed)) if streamed else (0, 0)
        drafts.append(dict(key=k, dtype=dtype, reads=rs, resident=resident, res_range=res_range,
                           res_offset=res_offset if resident else -1, st_range=st_range,
                           chunk_ids=tuple(range(first_chunk, len(chunks)))))

    # Issue points and arena offsets for the streamed groups.
    streamed = [d for d in drafts if d["st_range"][1] > d["st_range"][0]]
    depth = config.prefetch_depth
    intervals = []
    for j, d in enumerate(streamed):
        d["first"], d["last"] = min(r.first_use for r in d["reads"]), max(r.last_use for r in d["reads"])
        anchor = j - depth if j >= depth else None
        d["issue_before"] = anchor
        issue = (streamed[anchor]["first"] if anchor is not None else -1) - 0.5
        intervals.append((issue, d["last"], _align(d["st_range"][1] - d["st_range"][0]), d["dtype"]))
    offsets, arena_sizes = _first_fit(intervals)
    for d, off in zip(streamed, offsets):
        d["arena_offset"] = off

    groups, weights = [], []
    for d in drafts:
        st0, st1 = d["st_range"]
        arena_offset = d.get("arena_offset", -1)
        copies = []
        if st1 > st0:
            for c in (chunks[i] for i in d["chunk_ids"]):
                lo, hi = max(c.start, st0), min(c.start + c.nbytes, st1)
                if hi > lo:
                    copies.append(Copy(c.index, lo, arena_offset + lo - st0, hi - lo))
        groups.append(GroupPlan(
            key=d["key"], dtype=d["dtype"], first_use=min(r.first_use for r in d["reads"]),
            last_use=max(r.last_use for r in d["reads"]), chunks=d["chunk_ids"], resident_range=d["res_range"],
            resident_offset=d["res_offset"], stream_range=d["st_range"], arena_offset=arena_offset,
            copies=tuple(copies), issue_before=d.get("issue_before")))
        resident_ids = {id(r) for r in d["resident"]}
        for r in d["reads"]:
            if id(r) in resident_ids:
                loc, off = "resident", d["res_offset"] + r.offset - d["res_range"][0]
            else:
                loc, off = "arena", arena_offset + r.offset - st0
            weights.append(WeightPlan(r.input_index, d["key"], r.offset, r.nbytes, r.shape, r.stride, loc, off))

    host_bytes = sum(by_group[k][0].group.nbytes for k in keys)
    return Plan(cs, config.resident_fraction, depth, tuple(groups), tuple(chunks),
                tuple(sorted(weights, key=lambda w: w.input_index)),
                tuple(sorted(arena_sizes.items())), tuple(sorted(resident_sizes.items())), host_bytes)
