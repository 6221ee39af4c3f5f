"""What a new graph's plan must count of the device memory other graphs hold, and one `MemoryBudget` for several.

    every graph          chunks another graph of the same model keeps resident are read from that copy (held):
                         no second copy, counted in the new graph's resident bytes
    plain memory_budget  per graph: its resident bytes (incl. held) + its arena + its activations
    MemoryBudget B       all its graphs together, on one device:
                           sum of resident copies (each model's once) + per dtype max arena + max activations
                           <= B less the headroom, whichever graph runs

A graph under a `MemoryBudget` is planned with what the others leave. If it does not fit even with nothing more
resident, the resident chunks of the budget's graphs called least recently are taken back (`GraphRuntime.evict`),
as few graphs as make it fit; those graphs are planned again, and recompiled, on their next call, within what is
left (which the new graph left room for: their leanest arena and their activations stay counted). A graph that is
planned again never takes anything back, so two graphs cannot keep evicting each other.

The weights one graph reads are under one budget object or none: a graph under a `MemoryBudget` and one outside it
(or under another) reading the same offloaded weights would count the same resident copy in two budgets.
"""

from __future__ import annotations

import itertools
import logging
import weakref

import torch

from ..config import ChunkFlowConfig, MemoryBudget, format_bytes
from ..plan.layout import streaming_floor
from ..plan.ir import DeviceState
from .arena import BUDGET_GRAPHS, RESIDENTS, GraphRuntime, members, usage  # noqa: F401  (usage: public here too)

log = logging.getLogger(__name__)

_calls = itertools.count(1)


def touch(rt: GraphRuntime) -> None:
    """``rt`` runs now (least recently called graphs give their resident chunks back first)."""
    rt.last_call = next(_calls)


def shared(config: ChunkFlowConfig) -> MemoryBudget | None:
    return config.memory_budget if isinstance(config.memory_budget, MemoryBudget) else None


def keys_of(reads, device: torch.device) -> dict:
    return {RESIDENTS.key(device, r.group): r.group for r in reads}


def check(reads, device: torch.device, config: ChunkFlowConfig, exclude: GraphRuntime | None = None) -> None:
    """Refuse budgets mixed on the same weights, and a `MemoryBudget` used on two devices."""
    mine = shared(config)
    keys = keys_of(reads, device)
    for rt in RESIDENTS.live():
        if rt is exclude or rt.budget is mine or not rt.group_keys & keys.keys():
            continue
        name = keys[next(iter(rt.group_keys & keys.keys()))].key
        theirs = "no MemoryBudget" if rt.budget is None else repr(rt.budget)
        raise ValueError(
            f"memory_budget: this graph's weights (group {name}, ...) are also read by a graph compiled with "
            f"{theirs}, and this one has {mine if mine is not None else 'no MemoryBudget'}. Graphs that read the same "
            f"offloaded weights share their resident copy, so they must be planned under the same MemoryBudget "
            f"object, or all without one: pass the same memory_budget to every torch.compile of this model (graphs "
            f"compiled earlier live until torch._dynamo.reset() or until the compiled model is dropped).")
    if mine is not None:
        devices = {str(m.device) for m in members(mine)} - {str(device)}
        if devices:
            raise ValueError(f"memory_budget: {mine!r} already plans graphs on {', '.join(sorted(devices))}; a "
                             f"MemoryBudget is the memory of one device, this graph runs on {device}. Make one "
                             f"MemoryBudget per device.")


def device_state(reads, device: torch.device, config: ChunkFlowConfig, *, exclude: GraphRuntime | None = None,
                 evicted: tuple[GraphRuntime, ...] = ()) -> DeviceState:
    """What is on ``device`` for a new graph reading ``reads``, leaving out ``exclude`` (the graph being planned
    again) and the resident chunks of ``evicted``."""
    keys = keys_of(reads, device)
    users = [rt for rt in RESIDENTS.live() if rt is not exclude and rt not in evicted]
    held = {}
    for key, group in keys.items():
        e = RESIDENTS.entries.get(key)
        if e is not None and any(key in rt.held["residents"] for rt in users):
            held[group.key] = (e.lo, e.hi)
    held_bytes = sum(hi - lo for lo, hi in held.values())
    budget = shared(config)
    if budget is None:
        note = (f"{format_bytes(held_bytes)} of these weights stay resident on {device} for this model's other "
                f"graphs and are read from there (one copy per model); plan all of its graphs under one "
                f"cfcompile.MemoryBudget to let a graph that does not fit take them back" if held else "")
        return DeviceState(held, holders=note)
    others = members(budget, exclude)
    other, seen, arena, act = 0, set(), {}, 0
    for m in others:
        act = max(act, m.activation_bytes)
        lean = m.stale or m in evicted          # will be planned again: count its leanest arena, no residents
        sizes = m.floor_arena if lean else dict(m.plan.arena_bytes)
        if m.shared_arena:
            for dt, n in sizes.items():
                arena[dt] = max(arena.get(dt, 0), n)
        else:
            other += sum(sizes.values())
        if lean:
            continue
        for key in m.held["residents"]:
            if key not in keys and key not in seen:
                seen.add(key)
                other += RESIDENTS.entries[key].nbytes
    they = (f"even with their resident chunks taken back they need" if evicted else
            f"they hold {format_bytes(other)} resident and need")
    note = (f"{budget!r} is shared with {len(others)} other graph(s) on {device}: {they} a shared arena of "
            f"{format_bytes(sum(arena.values()))} and activations up to {format_bytes(act)}" +
            (f"; {format_bytes(held_bytes)} of this graph's weights are resident already" if held else "")) \
        if others else ""
    return DeviceState(held, other, arena, act, note)


def register(rt: GraphRuntime, config: ChunkFlowConfig, reads, activation_bytes: int) -> None:
    """After ``rt`` is built: it counts in its `MemoryBudget` from now on."""
    touch(rt)
    rt.activation_bytes = activation_bytes
    budget = shared(config)
    if budget is None:
        return
    rt.budget = budget
    rt.floor_arena = streaming_floor(reads, config)
    if budget.bytes is None:   # "auto", resolved by this first graph
        budget.bytes = rt.plan.memory_budget
    BUDGET_GRAPHS.setdefault(budget, weakref.WeakSet()).add(rt)
