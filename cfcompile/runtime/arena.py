"""Device memory of one compiled graph: arenas, their per-group slots, and resident weights."""

from __future__ import annotations

import ctypes
import weakref

import torch

from ..config import format_bytes
from ..offload import _CudaArrayInterface
from ..passes.plan import Plan
from .ops import forget_slots


def _retire(pointers: list[int], keys: set) -> None:
    forget_slots(pointers)
    for key in keys:
        ARENAS.release(key)


def alias(buf: torch.Tensor, offset: int, nbytes: int) -> torch.Tensor:
    """``nbytes`` of ``buf`` from byte ``offset`` as a tensor of its own (storage offset 0, same memory).

    Slots are passed to the compiled graph as separate inputs; giving each a storage of its own keeps Inductor from
    having to reason about inputs that are views with a storage offset.
    """
    ptr = buf.data_ptr() + offset
    if buf.device.type == "cuda":
        raw = torch.as_tensor(_CudaArrayInterface(buf, ptr, nbytes), device=buf.device)
    else:
        array = (ctypes.c_uint8 * nbytes).from_address(ptr)
        array.base = buf  # frombuffer keeps the array alive, the array keeps ``buf``
        raw = torch.frombuffer(array, dtype=torch.uint8)
    return raw.view(buf.dtype)


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
        self.refs[key] = self.refs.get(key, 0) + 1
        buf = self.buffers.get(key)
        if buf is None or buf.numel() * buf.element_size() < nbytes:
            old = buf
            self.buffers[key] = alloc(nbytes, dtype)
            if old is not None:
                for rt in list(self.users):
                    if key in rt.arena_keys:
                        rt.rebind(key, self.buffers[key])
        return self.buffers[key]

    def release(self, key: tuple[str, str]) -> None:
        """A graph using ``key`` is gone; free the buffer with the last one."""
        self.refs[key] = self.refs.get(key, 1) - 1
        if self.refs[key] <= 0:
            self.refs.pop(key, None)
            self.buffers.pop(key, None)

    def bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers.values())


ARENAS = _ArenaPool()


class GraphRuntime:
    """The device memory of one compiled graph: an arena per dtype and the resident weights, allocated once.

    ``inputs`` are what the compiled code gets after the Dynamo inputs, in `InputLayout` order: one arena slot per
    streamed group (views into the arena; groups that are never live together share bytes), each streamed group's
    host buffer, and one resident slot per group with resident weights.
    """

    def __init__(self, plan: Plan, groups: dict, device: torch.device, shared_arena: bool = True):
        self.plan, self.device = plan, device

        def alloc(nbytes: int, dt: str) -> torch.Tensor:
            try:
                return torch.empty(nbytes // getattr(torch, dt).itemsize, dtype=getattr(torch, dt), device=device)
            except torch.OutOfMemoryError as e:
                raise torch.OutOfMemoryError(
                    f"chunkflow: allocating {format_bytes(nbytes)} on {device} for this graph's weights failed "
                    f"(arena {format_bytes(plan.total_arena_bytes)} + resident "
                    f"{format_bytes(plan.total_resident_bytes)}). Lower resident_fraction, prefetch_depth or "
                    f"chunk_size. ({e})") from None

        self.arena_keys: set[tuple[str, str]] = set()
        if shared_arena:
            self.arena_keys = {(str(device), dt) for dt, _ in plan.arena_bytes}
            self.arenas = {dt: ARENAS.get(device, dt, n, alloc) for dt, n in plan.arena_bytes}
        else:
            self.arenas = {dt: alloc(n, dt) for dt, n in plan.arena_bytes}
        self.resident_buffers = {dt: alloc(n, dt) for dt, n in plan.resident_bytes}
        self.slots = self._slots()
        if shared_arena:
            ARENAS.users.add(self)  # after its slots exist: a later graph growing the arena re-points them
        self.hosts = [groups[g.key].device_view for g in plan.streamed]
        self.residents = []
        for g in plan.groups:
            if g.resident_bytes:
                dst = alias(self.resident_buffers[g.dtype], g.resident_offset, g.resident_bytes)
                src = groups[g.key].device_view
                dst.copy_(src[g.resident_range[0] // src.element_size():g.resident_range[1] // src.element_size()])
                self.residents.append(dst)
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()
        # Wrap-around state is keyed by slot address: forget it when this arena goes, before the address is reused.
        weakref.finalize(self, _retire, [t.data_ptr() for t in self.slots], set(self.arena_keys))

    def _slots(self) -> list[torch.Tensor]:
        return [alias(self.arenas[g.dtype], g.arena_offset, g.streamed_bytes) for g in self.plan.streamed]

    def rebind(self, key: tuple[str, str], buffer: torch.Tensor) -> None:
        """The shared arena of ``key`` moved to ``buffer`` (it grew): point the slots there."""
        forget_slots([t.data_ptr() for t in self.slots])
        self.arenas[key[1]] = buffer
        self.slots = self._slots()

    @property
    def inputs(self) -> list[torch.Tensor]:
        return [*self.slots, *self.hosts, *self.residents]
