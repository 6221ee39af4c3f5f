"""The two custom ops the chunkflow pass inserts, and the copy stream they share.

``cfcompile::prefetch_(arena, src, src_offsets, dst_offsets, numels, event)``
    Copy ``src[so:so+n] -> arena[do:do+n]`` for each chunk. On CUDA the copies go on the device's copy stream,
    which first waits for everything issued so far on the current stream (the arena region being overwritten was
    read by that work), and then records ``event``. On the CPU the copies are synchronous.
``cfcompile::wait_(arena, event)``
    Make the current stream wait for ``event``: the chunks are in the arena once this returns on the stream.

Both declare ``arena`` as mutated. The arena is a graph input, so Inductor keeps every prefetch, wait and arena
read in program order (a mutation orders all earlier reads before it and all later reads after it) and never
reuses arena memory for its own buffers. Events are keyed by (arena pointer, event id): state keyed by what the
compiled code was given, so an FX-graph-cache hit in a fresh process works.
"""

from __future__ import annotations

import torch

_copy_streams: dict[int, torch.cuda.Stream] = {}
_events: dict[tuple[int, int], torch.cuda.Event] = {}


def copy_stream(device: torch.device) -> torch.cuda.Stream:
    """The one copy stream per device, shared by every compiled graph and model."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    s = _copy_streams.get(index)
    if s is None:
        s = _copy_streams[index] = torch.cuda.Stream(device=index)
    return s


def _event(arena: torch.Tensor, event: int) -> torch.cuda.Event:
    key = (arena.data_ptr(), event)
    ev = _events.get(key)
    if ev is None:
        ev = _events[key] = torch.cuda.Event()
    return ev


@torch.library.custom_op("cfcompile::prefetch_", mutates_args=("arena",))
def prefetch_(arena: torch.Tensor, src: torch.Tensor, src_offsets: list[int], dst_offsets: list[int],
              numels: list[int], event: int) -> None:
    if arena.device.type == "cuda":
        stream = copy_stream(arena.device)
        stream.wait_stream(torch.cuda.current_stream(arena.device))
        with torch.cuda.stream(stream):
            for so, do, n in zip(src_offsets, dst_offsets, numels):
                arena[do:do + n].copy_(src[so:so + n], non_blocking=True)
            _event(arena, event).record(stream)
    else:
        for so, do, n in zip(src_offsets, dst_offsets, numels):
            arena[do:do + n].copy_(src[so:so + n])


@prefetch_.register_fake
def _(arena, src, src_offsets, dst_offsets, numels, event) -> None:
    return None


@torch.library.custom_op("cfcompile::wait_", mutates_args=("arena",))
def wait_(arena: torch.Tensor, event: int) -> None:
    if arena.device.type == "cuda":
        torch.cuda.current_stream(arena.device).wait_event(_event(arena, event))


@wait_.register_fake
def _(arena, event) -> None:
    return None


def forget(arena: torch.Tensor) -> None:
    """Drop the events of an arena that is being freed."""
    ptr = arena.data_ptr()
    for key in [k for k in _events if k[0] == ptr]:
        del _events[key]
