"""Device memory of compiled graphs: the streaming arenas (`ARENAS`, one per device and dtype), the resident copies
of the weights (`RESIDENTS`, one per device and host group, i.e. per model), and each graph's slots into them
(`GraphRuntime`)."""

from __future__ import annotations

import operator
import weakref

import torch

from .. import config
from ..config import format_bytes
from ..pinned import alias, align
from ..plan.inputs import InputLayout
from ..plan.ir import Plan
from ..plan.ir import BUDGET_HEADROOM
from .ops import forget_slots

_GROUP, _GENERATION = operator.itemgetter(0), operator.attrgetter("generation")   # of a (group, shift) binding


def _retire(held: dict) -> None:
    """Give back what a graph holds (at GC, or `GraphRuntime.close`): slots' wrap-around state, arenas, residents."""
    slots, arenas, residents = held["slots"], held["arenas"], held["residents"]
    held.update(slots=[], arenas=[], residents=[])
    forget_slots(slots)
    for key in arenas:
        ARENAS.release(key)
    for key in residents:
        RESIDENTS.release(key)


class _ArenaPool:
    """One streaming arena per (device, dtype), shared by every graph that uses that device: graphs of one model
    (resolutions, batch sizes, graph breaks) run one after another on one stream, so their arenas need not add up.
    The buffer grows to the largest requirement; the graphs sharing it are re-pointed at the new one (their slots
    are passed to the compiled code on every call, so nothing is baked in)."""

    def __init__(self):
        self.buffers: dict[tuple[str, str], torch.Tensor] = {}
        self.users: "weakref.WeakSet[GraphRuntime]" = weakref.WeakSet()
        self.refs: dict[tuple[str, str], int] = {}

    def get(self, device: torch.device, dtype: str, nbytes: int, alloc) -> torch.Tensor:
        key = (str(device), dtype)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() * buf.element_size() < nbytes:
            old = buf
            self.buffers[key] = alloc(nbytes, dtype)  # may raise: nothing changed yet
            if old is not None:
                for rt in list(self.users):
                    if key in rt.arena_keys:
                        rt.rebind(key, self.buffers[key])
        self.refs[key] = self.refs.get(key, 0) + 1
        return self.buffers[key]

    def release(self, key: tuple[str, str]) -> None:
        """A graph using ``key`` is gone; free the buffer with the last one."""
        self.refs[key] = self.refs.get(key, 1) - 1
        if self.refs[key] <= 0:
            self.refs.pop(key, None)
            self.buffers.pop(key, None)

    def bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers.values())

    def size(self, device: torch.device, dtype: str) -> int:
        b = self.buffers.get((str(device), dtype))
        return 0 if b is None else b.numel() * b.element_size()

    def fit(self, key: tuple[str, str], alloc) -> None:
        """Shrink the buffer of ``key`` to what its remaining graphs plan (a graph gave its share back): free it
        first, then allocate the smaller one and re-point them, so the device never holds both. The copy stream is
        drained first: a wrap-around copy may still be writing the old bytes."""
        buf = self.buffers.get(key)
        users = [rt for rt in list(self.users) if key in rt.arena_keys and not rt.closed]
        if buf is None or not users:
            return
        need = max(dict(rt.plan.arena_bytes).get(key[1], 0) for rt in users)
        if need >= buf.numel() * buf.element_size():
            return
        device = buf.device
        for rt in users:
            rt.drop_arena(key)
        del buf
        self.buffers.pop(key)
        if device.type == "cuda":
            from .ops import copy_stream
            copy_stream(device).synchronize()
        new = self.buffers[key] = alloc(need, key[1])
        for rt in users:
            rt.rebind(key, new)


ARENAS = _ArenaPool()


class _Resident:
    """The device copy of bytes [lo, hi) of one host group, as it was at ``generation``."""

    def __init__(self, group, lo: int, hi: int, buffer: torch.Tensor, refs: int):
        self.group, self.lo, self.hi, self.buffer, self.refs = group, lo, hi, buffer, refs
        self.generation = group.generation

    def refresh(self) -> None:
        """Copy the group's bytes again if a weight of it changed since (`offload.Group.changed`)."""
        if self.generation != self.group.generation:
            item = self.buffer.element_size()
            self.buffer[:(self.hi - self.lo) // item].copy_(self.group.device_view[self.lo // item:self.hi // item])
            self.generation = self.group.generation

    @property
    def nbytes(self) -> int:
        return self.buffer.numel() * self.buffer.element_size()


class _ResidentPool:
    """Resident weights: one device copy per (device, host group), shared by every graph that reads the group.
    Residency belongs to the model on a device, not to a graph: a graph of another resolution, batch size or after
    a graph break reads the chunks resident for an earlier one (its planner counts them, `DeviceState.held`) instead
    of copying them again. An entry holds one contiguous byte range of its group; a graph that keeps more grows it
    to the hull of both (graphs reading the old copy are re-pointed, like the arena), so no byte is on the device
    twice. Freed with the last graph using it. Keyed by the host buffer's address, not `Group.key`: two models
    have groups of the same name."""

    def __init__(self):
        self.entries: dict[tuple[str, int], _Resident] = {}
        self.users: "weakref.WeakSet[GraphRuntime]" = weakref.WeakSet()   # every live graph (the registry)

    @staticmethod
    def key(device: torch.device, group) -> tuple[str, int]:
        return str(device), group.host.data_ptr()

    def acquire(self, device: torch.device, group, rng: tuple[int, int], alloc) -> tuple[str, int]:
        key = self.key(device, group)
        e = self.entries.get(key)
        if e is not None and e.lo <= rng[0] and rng[1] <= e.hi:
            e.refresh()
            e.refs += 1
            return key
        lo, hi = (min(rng[0], e.lo), max(rng[1], e.hi)) if e is not None else rng
        dt = str(group.dtype).removeprefix("torch.")
        # rounded up to ALIGN bytes, as the plan counts it (the CUDA allocator rounds up further on its own)
        buf = alloc(align(hi - lo), dt)   # may raise: nothing changed yet
        src, item = group.device_view, group.device_view.element_size()
        buf[:(hi - lo) // item].copy_(src[lo // item:hi // item])
        self.entries[key] = _Resident(group, lo, hi, buf, (e.refs if e is not None else 0) + 1)
        if e is not None:   # grown: graphs reading the old copy move to the new one, the old one is freed
            for rt in list(self.users):
                if key in rt.held["residents"]:
                    rt.rebind_residents()
        return key

    def release(self, key: tuple[str, int]) -> None:
        e = self.entries.get(key)
        if e is not None:
            e.refs -= 1
            if e.refs <= 0:
                del self.entries[key]

    def bytes(self, device: torch.device | str | None = None) -> int:
        return sum(e.nbytes for k, e in self.entries.items() if device is None or k[0] == str(device))

    def extra_bytes(self, device: torch.device, group, rng: tuple[int, int]) -> int:
        """Device bytes that `acquire` of ``rng`` would add."""
        e = self.entries.get(self.key(device, group))
        if e is None:
            return align(rng[1] - rng[0])
        return max(0, align(max(rng[1], e.hi) - min(rng[0], e.lo)) - e.nbytes)

    def live(self) -> list["GraphRuntime"]:
        return [rt for rt in list(self.users) if not rt.closed]


RESIDENTS = _ResidentPool()


class NoRoom(RuntimeError):
    """Keeping another bound group's resident chunks would exceed the graph's memory budget."""


class GraphRuntime:
    """The device memory of one compiled graph: an arena per dtype and the resident weights, and what it is given
    on each call.

    `inputs_for(binding)` are what the compiled code gets after the Dynamo inputs, in `InputLayout` order: one arena
    slot per streamed group (views into the arena; groups that are never live together share bytes), each streamed
    group's host window of the *bound* group (`runtime.binding`: Dynamo runs one graph for every module of the same
    structure), the host window of the group the next call will read for each wrapped group (wrap-around), and one
    resident slot per group with resident weights (a view of the bound group's device copy in `RESIDENTS`, shared
    with the model's other graphs). A graph that serves several blocks keeps each block's resident chunks; under a
    `memory_budget`, a block whose resident chunks would not fit raises `NoRoom` and the backend runs it through a
    variant of the graph that streams everything.

    `runtime.budget` sets ``budget``, ``activation_bytes``, ``floor_arena`` and ``last_call`` for graphs under a
    shared `MemoryBudget`; ``stale`` means its resident chunks were taken back and it must be planned again.
    """

    def __init__(self, plan: Plan, groups: dict, device: torch.device, shared_arena: bool = True):
        self.plan, self.device, self.shared_arena = plan, device, shared_arena
        self.groups = groups
        self.group_keys = {RESIDENTS.key(device, g) for g in groups.values()}
        self.budget, self.activation_bytes, self.floor_arena, self.last_call = None, 0, {}, 0
        self.lean_arena: dict[str, int] = {}   # per dtype: the arena of the lean variant (set under a budget)
        self.stale = self.closed = False
        self._alloc = alloc = self._allocator()
        # What the finalizer gives back; filled as it is taken, so a failure half way gives back exactly that.
        self.held: dict = {"arenas": [], "residents": [], "slots": []}
        self.arena_keys: set[tuple[str, str]] = set()
        self.bound: dict = {}          # (binding, next call's binding, flip) -> (generations, inputs)
        # per flip: the binder's entry -> (the next call's entry, inputs): the steady-state lookup, by identity
        # (`compiler.backend._Compiled.bind`); emptied with ``bound``, so no device memory outlives a move
        self.by_entry: tuple[dict, dict] = ({}, {})
        self.no_room: set = set()      # bindings whose resident chunks do not fit the budget
        # the binding at trace time: each plan group is read from the group it was traced with, at its offsets
        self.trace_binding = tuple((groups[g.key], 0) for g in plan.groups)
        try:
            self.arenas = {}
            for dt, n in plan.arena_bytes:
                if shared_arena:
                    self.arenas[dt] = ARENAS.get(device, dt, n, alloc)
                    self.held["arenas"].append((str(device), dt))
                else:
                    self.arenas[dt] = alloc(n, dt)
            for g in plan.groups:
                if g.resident_bytes:
                    self.held["residents"].append(RESIDENTS.acquire(device, groups[g.key], g.resident_range, alloc))
        except BaseException:
            _retire(self.held)
            raise
        self.arena_keys = set(self.held["arenas"])
        self._doubled = [j for j, g in enumerate(plan.streamed) if g.next_arena_offset >= 0]
        self.flip = 0                  # double buffering: which of the two regions this call reads
        self.slots, self.seconds = self._slots()
        self.held["slots"] = [t.data_ptr() for t in (*self.slots, *self.seconds)]
        if shared_arena:
            ARENAS.users.add(self)  # after its slots exist: a later graph growing the arena re-points them
        RESIDENTS.users.add(self)
        self._streamed = [i for i, g in enumerate(plan.groups) if g.streamed_bytes]   # plan group of each slot
        self._wrapped = [j for j, g in enumerate(plan.streamed) if g.wrap_before is not None]
        self._resident = [i for i, g in enumerate(plan.groups) if g.resident_bytes]
        self.layout = InputLayout.after(0, plan)   # where each kind sits among the extra inputs
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()
        # Wrap-around state is keyed by slot address: forget it when this arena goes, before the address is reused.
        self._finalizer = weakref.finalize(self, _retire, self.held)

    def _allocator(self):
        plan, device = self.plan, self.device

        def alloc(nbytes: int, dt: str) -> torch.Tensor:
            try:
                return torch.empty(nbytes // getattr(torch, dt).itemsize, dtype=getattr(torch, dt), device=device)
            except torch.OutOfMemoryError as e:
                raise torch.OutOfMemoryError(
                    f"chunkflow: allocating {format_bytes(nbytes)} on {device} for this graph's weights failed "
                    f"(arena {format_bytes(plan.total_arena_bytes)} + resident "
                    f"{format_bytes(plan.total_resident_bytes)}). Lower resident_fraction, prefetch_depth or "
                    f"chunk_size. ({e})") from None
        return alloc

    def _slots(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each streamed group's region of the arena, and the second region of each double-buffered one."""
        st = self.plan.streamed
        return ([alias(self.arenas[g.dtype], g.arena_offset, g.streamed_bytes) for g in st],
                [alias(self.arenas[st[j].dtype], st[j].next_arena_offset, st[j].streamed_bytes) for j in self._doubled])

    def forget_inputs(self) -> None:
        """The slots or residents moved: build every call's inputs again."""
        self.bound.clear()
        for cache in self.by_entry:
            cache.clear()

    def rebind(self, key: tuple[str, str], buffer: torch.Tensor) -> None:
        """The shared arena of ``key`` moved to ``buffer`` (it grew): point the slots there."""
        forget_slots(self.held["slots"])
        self.arenas[key[1]] = buffer
        self.slots, self.seconds = self._slots()
        self.held["slots"] = [t.data_ptr() for t in (*self.slots, *self.seconds)]
        self.forget_inputs()

    def drop_arena(self, key: tuple[str, str]) -> None:
        """The shared arena of ``key`` is about to be freed and replaced (`_ArenaPool.fit`): let go of its slots."""
        forget_slots(self.held["slots"])
        self.held["slots"] = []
        self.arenas.pop(key[1], None)
        self.slots, self.seconds = [], []
        self.forget_inputs()

    def rebind_residents(self) -> None:
        """A resident copy this graph reads moved (it grew): build the inputs again on the next call."""
        self.forget_inputs()

    @property
    def inputs(self) -> list[torch.Tensor]:
        """The inputs for the weights the graph was traced with."""
        return self.inputs_for(self.trace_binding)

    @property
    def hosts(self) -> list[torch.Tensor]:
        """The host windows for the traced weights ([] once the graph gave its memory back)."""
        if self.closed or self.stale:
            return []
        inputs = self.inputs
        return [inputs[i] for i in self.layout.hosts]

    @property
    def residents(self) -> list[torch.Tensor]:
        """The resident slots for the traced weights ([] once they were taken back)."""
        if self.stale or self.closed or not self._resident:
            return []
        inputs = self.inputs
        return [inputs[i] for i in self.layout.residents.values()]

    def inputs_for(self, binding: tuple, following: tuple | None = None, flip: int = 0) -> list[torch.Tensor]:
        """The extra inputs when the graph reads the host groups of ``binding`` (per plan group: (group, byte
        shift)) and the next call will read those of ``following`` (default: the same); ``flip``: double-buffered
        groups read their second region this call and copy for the next call into the first."""
        following = binding if following is None else following
        # the hit path runs on every block call of a regional compile: C-level iteration only, no generator
        gens = list(map(_GENERATION, map(_GROUP, binding)))
        hit = self.bound.get((binding, following, flip))
        if hit is not None and hit[0] == gens:
            return hit[1]   # never a binding of no_room: those raise below before anything is cached
        if binding in self.no_room:
            raise NoRoom(binding[0][0].key)
        plan = self.plan
        hosts = [self._window(binding[i], plan.groups[i]) for i in self._streamed]
        nexts = [self._window(following[self._streamed[j]], plan.streamed[j]) for j in self._wrapped]
        try:
            residents = [self._resident_slot(binding, i) for i in self._resident]
        except NoRoom:
            self.no_room.add(binding)
            raise
        slots, seconds = list(self.slots), list(self.seconds)
        if flip:
            for k, j in enumerate(self._doubled):
                slots[j], seconds[k] = seconds[k], slots[j]
        inputs = InputLayout.pack(slots, hosts, nexts, residents, seconds)
        self.bound[binding, following, flip] = (gens, inputs)
        return inputs

    @staticmethod
    def _window(bound: tuple, g) -> torch.Tensor:
        """The bytes [shift, shift + end of the streamed range) of the bound host group: copies address them from
        its start as they would the traced group's."""
        group, shift = bound
        return alias(group.device_view, shift, g.stream_range[1])

    def _resident_slot(self, binding: tuple, i: int) -> torch.Tensor:
        g = self.plan.groups[i]
        group, shift = binding[i]
        lo, hi = g.resident_range[0] + shift, g.resident_range[1] + shift
        key = RESIDENTS.key(self.device, group)
        if key not in self.held["residents"] and not self._fits(group, (lo, hi)):
            raise NoRoom(group.key)
        e = RESIDENTS.entries.get(key)
        if key not in self.held["residents"] or not (e.lo <= lo and hi <= e.hi):
            self.held["residents"].append(RESIDENTS.acquire(self.device, group, (lo, hi), self._alloc))
            e = RESIDENTS.entries[key]
        e.refresh()
        return alias(e.buffer, lo - e.lo, hi - lo)

    def _fits(self, group, rng: tuple[int, int]) -> bool:
        """Whether keeping ``rng`` of another bound group resident stays within the memory budget, less the
        planner's headroom: a shared `MemoryBudget`'s usage, or for a plain one everything chunkflow holds on the
        device (every arena and resident copy: the other block classes of a regional compile count too) plus this
        graph's activations."""
        budget = self.budget.bytes if self.budget is not None else self.plan.memory_budget
        if budget is None:
            return True
        used = usage(self.budget)["peak_bytes"] if self.budget is not None else \
            ARENAS.bytes() + RESIDENTS.bytes(self.device) + self.activation_bytes
        # the blocks that do not fit stream through the lean variant: its arena must fit too
        lean = sum(max(0, n - ARENAS.size(self.device, dt)) if self.shared_arena else n
                   for dt, n in self.lean_arena.items())
        return used + lean + RESIDENTS.extra_bytes(self.device, group, rng) <= (1 - BUDGET_HEADROOM) * budget

    def evict(self) -> None:
        """Give the resident chunks back (a shared budget needs the room): the graph must be planned again before
        it runs (``stale``)."""
        self.stale = True
        self.forget_inputs()
        self.no_room.clear()
        for key in self.held["residents"]:
            RESIDENTS.release(key)
        self.held["residents"] = []
        self._give_back_arenas()

    def _give_back_arenas(self) -> None:
        """Its share of the shared arenas too: the budget counts a stale graph at its leanest arena, so the buffer
        must not stay at the size this graph planned (it is planned again, and takes its arena again, on its next
        call)."""
        if not self.shared_arena:
            return
        ARENAS.users.discard(self)
        keys, self.held["arenas"], self.arena_keys = self.held["arenas"], [], set()
        for key in keys:
            self.drop_arena(key)
            ARENAS.release(key)
            ARENAS.fit(key, self._alloc)

    def close(self) -> None:
        """Give everything back now (the graph is being replaced), not when it is collected."""
        self.closed = self.stale = True
        self.slots, self.seconds = [], []
        self.forget_inputs()
        ARENAS.users.discard(self)
        RESIDENTS.users.discard(self)
        if self.budget is not None:
            BUDGET_GRAPHS.get(self.budget, set()).discard(self)
        self._finalizer()


#: The graphs planned under each shared `MemoryBudget` (`runtime.budget.register` adds them, `close` removes them).
BUDGET_GRAPHS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def members(budget, exclude: GraphRuntime | None = None) -> list[GraphRuntime]:
    """The live graphs under ``budget`` but ``exclude``, least recently called first."""
    return sorted((m for m in list(BUDGET_GRAPHS.get(budget, ())) if not m.closed and m is not exclude),
                  key=lambda m: m.last_call)


def usage(budget) -> dict[str, int]:
    """What the graphs under ``budget`` hold as planned (`MemoryBudget.usage`)."""
    graphs = members(budget)
    keys = {k for m in graphs for k in m.held["residents"]}
    resident = sum(RESIDENTS.entries[k].nbytes for k in keys)
    arena, private = {}, 0
    for m in graphs:
        sizes = m.floor_arena if m.stale else dict(m.plan.arena_bytes)
        if m.shared_arena:
            for dt, n in sizes.items():
                arena[dt] = max(arena.get(dt, 0), n)
        else:
            private += sum(sizes.values())
    act = max((m.activation_bytes for m in graphs), default=0)
    out = dict(resident_bytes=resident, arena_bytes=sum(arena.values()) + private, activation_bytes=act,
               graphs=len(graphs))
    out["peak_bytes"] = out["resident_bytes"] + out["arena_bytes"] + act
    return out


config.count_budgets_with(usage)
