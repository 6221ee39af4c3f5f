"""The plan IR: what the planner decides for one graph, as plain frozen data.

    WeightRead    an offloaded weight the Dynamo graph reads (`analysis.find_weight_reads`)
    Plan          chunks, groups (resident / streamed bytes, arena offsets, copies, issue points), weights
    DeviceState   what is on the device already (other graphs' resident chunks, a shared budget's use)
    BudgetError   the budget is below what the graph needs with nothing resident

Made by `layout` (without a cost model) and `search` (with one); read by the compiler, the runtime and the reports.
Every rank and every FX-graph-cache hit sees the same plan for the same inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from ..offload import Group

#: The planner keeps the predicted peak this share below ``memory_budget``: measured peaks on the H200 were up to
#: 3.4% above the prediction (Qwen-Image at 16 GiB) before the activation estimate modelled Inductor's buffer reuse;
#: since, the re-measured budget runs peaked 0.4% above (Wan) and 2.4% below (Flux) it (benchmarks/RESULTS.md).
BUDGET_HEADROOM = 0.05


@dataclasses.dataclass(frozen=True)
class WeightRead:
    """One offloaded weight that the graph reads."""

    input_index: int        # position among the graph's inputs
    group: Group
    offset: int             # bytes into the group
    nbytes: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    first_use: int          # index of the first / last node reading it, in graph order
    last_use: int


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One fixed-size piece of a group's bytes: the unit of residency."""

    index: int            # position in Plan.chunks
    group: str            # GroupPlan.key of its group
    start: int            # bytes into the group
    nbytes: int
    resident: bool        # copied once and kept on the device, else streamed every call


@dataclasses.dataclass(frozen=True)
class Copy:
    """One chunk copy of a prefetch: host group bytes -> arena bytes."""

    chunk: int
    src_offset: int       # bytes into the group
    dst_offset: int       # bytes into the arena
    nbytes: int


@dataclasses.dataclass(frozen=True)
class GroupPlan:
    """What the plan does with one group (a block's weights of one dtype)."""

    key: str
    dtype: str
    first_use: int
    last_use: int
    chunks: tuple[int, ...]
    resident_range: tuple[int, int]     # bytes of the group read from the device ([0, 0) if none); the runtime
    #                                     keeps one device copy per model and group, shared by its graphs
    resident_offset: int                # where they would sit packed per dtype (dumps; not the runtime's layout)
    stream_range: tuple[int, int]       # bytes of the group copied every call ([0, 0) if none)
    arena_offset: int                   # where they land in the arena (-1 if nothing streams)
    copies: tuple[Copy, ...]
    issue_before: int | None            # index into Plan.streamed of the group whose wait the prefetch precedes;
    #                                     None = at the start of the graph
    wrap_before: int | None = None      # wrap-around: the prefetch for the *next* call is issued before this
    #                                     streamed group's wait, in the tail of this call (None = no wrap-around)
    next_arena_offset: int = -1         # double buffering (>= 0): a second arena region; the copy for the next call
    #                                     goes there, issued at the start of this call, and the regions swap roles
    #                                     every call (a graph with no more streamed groups than the prefetch depth,
    #                                     e.g. one block of a regional compile, has nothing else to hide it behind)
    segments: tuple[tuple[int, int], ...] = ()  # copies moved behind collectives (yield policy): (collective
    #                                     ordinal, first copy index); copies from there on are issued right after
    #                                     that collective's wait, up to the next segment's first copy

    @property
    def streamed_bytes(self) -> int:
        return self.stream_range[1] - self.stream_range[0]

    @property
    def resident_bytes(self) -> int:
        return self.resident_range[1] - self.resident_range[0]


@dataclasses.dataclass(frozen=True)
class WeightPlan:
    """Where one weight is read from: its group's arena slot or its resident copy."""

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
    """The whole plan of one graph: pure data, deterministic, JSON-serialisable (`to_json`, `fingerprint`)."""

    chunk_size: int
    resident_fraction: float
    prefetch_depth: int
    groups: tuple[GroupPlan, ...]       # in order of first use
    chunks: tuple[Chunk, ...]
    weights: tuple[WeightPlan, ...]
    arena_bytes: tuple[tuple[str, int], ...]      # per dtype
    resident_bytes: tuple[tuple[str, int], ...]   # per dtype: device copies of this graph's groups (shared with the
    #                                               model's other graphs; may hold more than this graph reads)
    host_bytes: int                     # bytes of the host groups this graph reads from
    memory_budget: int | None = None    # the budget the plan was tuned for, if any
    collective_policy: str = "overlap"  # "yield": no copy is issued inside a collective's window
    schedule: str = "chunkflow"         # or "layerwise" (the baseline)
    pinned_bytes: int = 0               # of host_bytes, registered with cudaHostRegister (all of it for CUDA)
    weight_bytes: int = 0               # the weights themselves in those groups (host_bytes adds < 256 B each)

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
                        "host_bytes": self.host_bytes, "pinned_bytes": self.pinned_bytes,
                        "weight_bytes": self.weight_bytes}
        return d

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def code_key(self) -> str:
        """What the generated code depends on: two plans with the same key compile to the same code (the budget the
        plan was tuned for and the device bytes its groups' resident copies hold are not in the code: a resident
        slot is a view of just the planned range, given at call time)."""
        d = self.to_json()
        for k in ("memory_budget", "resident_bytes", "summary", "host_bytes", "pinned_bytes", "weight_bytes"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class DeviceState:
    """What a new graph's plan must count besides its own needs."""

    held: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    """Group key -> bytes of that group already on the device (one copy per model and group, shared by its
    graphs): reused, and counted in this graph's resident bytes."""
    other_resident_bytes: int = 0
    """Shared budget: resident (and private arena) bytes of the budget's other graphs, in groups this one does not
    read; they add up."""
    arena_bytes: dict[str, int] = dataclasses.field(default_factory=dict)
    """Shared budget: per dtype, the largest shared arena the other graphs need (one arena: max, not sum)."""
    activation_bytes: int = 0
    """Shared budget: the largest activation peak of the other graphs (one graph runs at a time: max)."""
    holders: str = ""
    """For errors: who holds what, in words."""

    def arena_total(self, own: dict[str, int], shared: bool = True) -> int:
        if not shared:  # a private arena adds to the shared one
            return sum(self.arena_bytes.values()) + sum(own.values())
        return sum(max(own.get(dt, 0), self.arena_bytes.get(dt, 0)) for dt in {*own, *self.arena_bytes})


NO_STATE = DeviceState()


class BudgetError(ValueError):
    """The memory budget is below what the graph needs with nothing resident; ``minimum_bytes`` is that need."""

    def __init__(self, message: str, minimum_bytes: int):
        super().__init__(message)
        self.minimum_bytes = minimum_bytes
