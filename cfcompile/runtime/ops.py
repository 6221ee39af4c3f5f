"""The two custom ops the chunkflow pass inserts, and the copy stream they share.

``cfcompile::prefetch_(slot, fences, after, src, src_offsets, dst_offsets, numels, event, overlap, phase)``
    Copy ``src[so:so+n] -> slot[do:do+n]`` for each chunk. ``after``: tensors read (not used) only to order the
    copy after the nodes that make them, e.g. the wait of the collective it must not overlap (the yield policy):
    a data dependency holds whatever Inductor's schedulers reorder. ``phase`` is for wrap-around: 1 = in the tail of a call,
    for the next call (remembered as pending); 2 = at the start of a call, only if no tail copied it (the first call,
    or after a call that stopped early); 0 = always. On CUDA the copies go on the device's copy stream,
    which first waits for everything issued so far on the current stream (the arena bytes being overwritten were
    read by that work), and then records ``event``. On the CPU the copies are synchronous.
``cfcompile::wait_(slot, event)``
    Make the current stream wait for ``event``: the chunks are in the slot once this returns on the stream.
With ``overlap=False`` (option ``overlap_copies=False``) copies run in order on the current stream and waits do
nothing: slower, and a way to rule the copy stream out when debugging.

A *slot* is one group's region of the arena, a graph input of its own (so identical blocks compile to identical
kernels). Both ops declare their slot as mutated, so Inductor orders wait -> reads. ``fences`` are slots declared
mutated although nothing is written to them: the slots whose bytes this copy overwrites (it follows their
``release_``), the previous prefetch's slot (copies stay in plan order) and the slot whose wait marks the issue point
(the prefetch stays ahead of it).
``cfcompile::release_(slot)``
    Does nothing at run time. It declares the slot mutated right after the slot's last read, which is all the
    ordering it needs: Inductor realizes every pending read of a buffer before a mutation of it
    (`GraphLowering.mark_buffer_mutated`) and schedules every earlier reader before the mutating kernel (`WeakDep`),
    so a prefetch that fences the slot comes after all of them. It takes no readers as inputs: an input of a
    custom op has to be written to memory and kept alive up to it, which made Inductor materialize outputs it fuses
    away (a bias add before a GELU) and cost Wan 2.1 3% of its streamed step and 0.4 GiB of peak on the H200.
Slots are graph inputs, so Inductor never reuses their memory. Events are keyed by (slot pointer, event id): state
keyed by what the compiled code was given, so an FX-graph-cache hit in a fresh process works.
"""

from __future__ import annotations

import threading
import time

import torch

from ..offload import on_change
from . import timing

_copy_streams: dict[int, torch.cuda.Stream] = {}


class _Exclusive:
    """The context of `exclusive` for one device: a lock, and the CUDA stream the last call ran on."""

    def __init__(self, device: torch.device):
        self.lock = threading.RLock()
        self.index = (device.index if device.index is not None else torch.cuda.current_device()) \
            if device.type == "cuda" else None
        self.last: tuple | None = None   # (stream id, device index, device type) of the last call's stream

    def __enter__(self):
        self.lock.acquire()
        if self.index is None:
            return self
        try:
            now = _current_stream(self.index)
            if self.last is not None and now != self.last:   # another stream: wait for the last call's work
                _stream(now).wait_stream(_stream(self.last))
            self.last = now
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()


def exclusive(device: torch.device) -> _Exclusive:
    """One chunkflow call at a time per device: every graph on it shares the arena, the resident copies, the copy
    stream and the wrap-around state. Calls from other threads wait for the lock; a call on another CUDA stream than
    the last call's first makes its stream wait (on the GPU) for everything issued so far on that one. A class, not a
    generator: it runs around every block of a regionally compiled model, so it must cost well under a microsecond
    when the stream does not change."""
    ctx = _exclusive.get(device)
    if ctx is None:
        with _exclusive_lock:
            ctx = _exclusive.setdefault(device, _Exclusive(device))
    return ctx


def _current_stream(index: int) -> tuple:
    # torch.cuda.current_stream builds a Stream object (microseconds); the raw triple is enough to compare
    return torch._C._cuda_getCurrentStream(index)


def _stream(triple: tuple) -> torch.cuda.Stream:
    stream_id, device_index, device_type = triple
    return torch.cuda.Stream(stream_id=stream_id, device_index=device_index, device_type=device_type)


_exclusive: dict[torch.device, _Exclusive] = {}
_exclusive_lock = threading.Lock()

_events: dict[tuple[int, int], torch.cuda.Event] = {}


def copy_stream(device: torch.device) -> torch.cuda.Stream:
    """The one copy stream per device, shared by every compiled graph and model."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    s = _copy_streams.get(index)
    if s is None:
        s = _copy_streams[index] = torch.cuda.Stream(device=index)
    return s


def _event(slot: torch.Tensor, event: int) -> torch.cuda.Event:
    key = (slot.data_ptr(), event)
    ev = _events.get(key)
    if ev is None:
        ev = _events[key] = torch.cuda.Event()
    return ev


# Wrap-around: copies made by a call's tail for the next call, keyed by *what* they copied where (slot address,
# source address, offsets, sizes), so a graph only takes bytes that are exactly the ones it needs; value: the byte
# range they occupy and the event recorded after them (CUDA).
_pending: dict[tuple, tuple[int, int, object]] = {}


def forget_source(ptr: int, nbytes: int) -> None:
    """Drop wrap-around copies made from host bytes [ptr, ptr + nbytes) (they changed since)."""
    for k in [k for k in _pending if ptr <= k[1] < ptr + nbytes]:
        del _pending[k]


on_change(forget_source)


def forget_slots(pointers: list[int]) -> None:
    """Drop wrap-around state of slots whose memory is being freed or moved (the next arena there is new)."""
    ptrs = set(pointers)
    for k in [k for k in _pending if k[0] in ptrs]:
        del _pending[k]


def _overwritten(lo: int, hi: int) -> None:
    """A copy into [lo, hi) spoils whatever was pending there. Within one graph nothing writes a pending slot's
    bytes before its next call takes them (the plan's lifetimes); another graph sharing the arena may."""
    for k, (a, b, _) in list(_pending.items()):
        if a < hi and lo < b:
            del _pending[k]


@torch.library.custom_op("cfcompile::prefetch_", mutates_args=("slot", "fences"))
def prefetch_(slot: torch.Tensor, fences: list[torch.Tensor], after: list[torch.Tensor], src: torch.Tensor,
              src_offsets: list[int],
              dst_offsets: list[int], numels: list[int], event: int, overlap: bool = True, phase: int = 0) -> None:
    cuda = slot.device.type == "cuda" and overlap
    if phase:
        key = (slot.data_ptr(), src.data_ptr(), tuple(src_offsets), tuple(dst_offsets), tuple(numels))
        if phase == 2:  # wrap-around, in this call: only if a previous call's tail copied exactly these bytes
            found = _pending.pop(key, None)
            if found is not None:
                if cuda:  # this graph's wait waits on its own event: chain it after the tail's copies
                    stream = copy_stream(slot.device)
                    stream.wait_event(found[2])
                    _event(slot, event).record(stream)
                return
    lo = slot.data_ptr()
    if _pending:
        _overwritten(lo, lo + slot.numel() * slot.element_size())
    if cuda:
        stream = copy_stream(slot.device)
        stream.wait_stream(torch.cuda.current_stream(slot.device))
        with torch.cuda.stream(stream):
            for so, do, n in zip(src_offsets, dst_offsets, numels):
                slot[do:do + n].copy_(src[so:so + n], non_blocking=True)
            _event(slot, event).record(stream)
    else:  # CPU, or overlap=False: copies in order on the current stream
        marks = timing.marks_for(slot)
        t0 = time.perf_counter() if marks is not None else 0.0
        for so, do, n in zip(src_offsets, dst_offsets, numels):
            slot[do:do + n].copy_(src[so:so + n], non_blocking=True)
        if marks is not None:  # calibration: copy time is not compute
            if slot.device.type == "cuda":
                torch.cuda.current_stream(slot.device).synchronize()
            marks.append(("copy", event, (time.perf_counter() - t0) * 1e3))
    if phase == 1:  # wrap-around, in the tail: for the next call
        ev = None
        if cuda:  # its own cached event (not the wait's, which this graph re-records every call)
            ev = _event(slot, -1 - event)
            ev.record(copy_stream(slot.device))
        _pending[key] = (lo, lo + slot.numel() * slot.element_size(), ev)


@prefetch_.register_fake
def _(slot, fences, after, src, src_offsets, dst_offsets, numels, event, overlap=True, phase=0) -> None:
    return None


@torch.library.custom_op("cfcompile::release_", mutates_args=("slot",))
def release_(slot: torch.Tensor) -> None:
    return None


@release_.register_fake
def _(slot) -> None:
    return None


@torch.library.custom_op("cfcompile::wait_", mutates_args=("slot",))
def wait_(slot: torch.Tensor, event: int, overlap: bool = True) -> None:
    marks = timing.marks_for(slot)
    if marks is not None:
        timing.mark(marks, "before-wait", event, slot.device)
    if slot.device.type == "cuda" and overlap:
        torch.cuda.current_stream(slot.device).wait_event(_event(slot, event))
    if marks is not None:
        timing.mark(marks, "after-wait", event, slot.device)


@wait_.register_fake
def _(slot, event, overlap=True) -> None:
    return None
