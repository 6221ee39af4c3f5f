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

import gc
import itertools
import logging

import torch

from ..config import ChunkFlowConfig, MemoryBudget, format_bytes
from ..plan.layout import streaming_floor
from ..plan.search import BudgetError, DeviceState, plan_with_model
from .arena import RESIDENTS, GraphRuntime

log = logging.getLogger(__name__)

_calls = itertools.count(1)


def touch(rt: GraphRuntime) -> None:
    """``rt`` runs now (least recently called graphs give their resident chunks back first)."""
    rt.last_call = next(_calls)


def _shared(config: ChunkFlowConfig) -> MemoryBudget | None:
    return config.memory_budget if isinstance(config.memory_budget, MemoryBudget) else None


def _members(budget: MemoryBudget, exclude: GraphRuntime | None = None) -> list[GraphRuntime]:
    return sorted((m for m in list(budget.members) if not m.closed and m is not exclude), key=lambda m: m.last_call)


def _keys(reads, device: torch.device) -> dict:
    return {RESIDENTS.key(device, r.group): r.group for r in reads}


def check(reads, device: torch.device, config: ChunkFlowConfig, exclude: GraphRuntime | None = None) -> None:
    """Refuse budgets mixed on the same weights, and a `MemoryBudget` used on two devices."""
    mine = _shared(config)
    keys = _keys(reads, device)
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
        devices = {str(m.device) for m in _members(mine)} - {str(device)}
        if devices:
            raise ValueError(f"memory_budget: {mine!r} already plans graphs on {', '.join(sorted(devices))}; a "
                             f"MemoryBudget is the memory of one device, this graph runs on {device}. Make one "
                             f"MemoryBudget per device.")


def device_state(reads, device: torch.device, config: ChunkFlowConfig, *, exclude: GraphRuntime | None = None,
                 evicted: tuple[GraphRuntime, ...] = ()) -> DeviceState:
    """What is on ``device`` for a new graph reading ``reads``, leaving out ``exclude`` (the graph being planned
    again) and the resident chunks of ``evicted``."""
    keys = _keys(reads, device)
    users = [rt for rt in RESIDENTS.live() if rt is not exclude and rt not in evicted]
    held = {}
    for key, group in keys.items():
        e = RESIDENTS.entries.get(key)
        if e is not None and any(key in rt.held["residents"] for rt in users):
            held[group.key] = (e.lo, e.hi)
    held_bytes = sum(hi - lo for lo, hi in held.values())
    budget = _shared(config)
    if budget is None:
        note = (f"{format_bytes(held_bytes)} of these weights stay resident on {device} for this model's other "
                f"graphs and are read from there (one copy per model); plan all of its graphs under one "
                f"cfcompile.MemoryBudget to let a graph that does not fit take them back" if held else "")
        return DeviceState(held, holders=note)
    members = _members(budget, exclude)
    other, seen, arena, act = 0, set(), {}, 0
    for m in members:
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
    note = (f"{budget!r} is shared with {len(members)} other graph(s) on {device}: {they} a shared arena of "
            f"{format_bytes(sum(arena.values()))} and activations up to {format_bytes(act)}" +
            (f"; {format_bytes(held_bytes)} of this graph's weights are resident already" if held else "")) \
        if members else ""
    return DeviceState(held, other, arena, act, note)


def plan_graph(reads, config: ChunkFlowConfig, costs, profile, device: torch.device, *, free_bytes=None,
               collective_policy: str = "overlap", replanning: GraphRuntime | None = None):
    """`plan_with_model` with what the device holds; under a `MemoryBudget` a new graph that does not fit takes
    resident chunks back from the budget's other graphs. Returns (plan, prediction, graphs to evict); nothing is
    changed here: the caller evicts them once it is about to allocate."""
    budget = _shared(config)
    if RESIDENTS.entries.keys() & _keys(reads, device).keys() or budget is not None and len(budget.members):
        gc.collect()   # graphs dropped in reference cycles (e.g. after torch._dynamo.reset()) hold memory until then
    check(reads, device, config, replanning)

    def attempt(evicted=()):
        state = device_state(reads, device, config, exclude=replanning, evicted=evicted)
        return plan_with_model(reads, config, costs, profile, free_bytes=free_bytes,
                               collective_policy=collective_policy, state=state)

    try:
        return (*attempt(), ())
    except BudgetError:
        victims = tuple(m for m in _members(budget, replanning) if not m.stale) if budget is not None else ()
        if replanning is not None or not victims:
            raise
    attempt(victims)   # does not fit even with every other graph lean: this error names the minimum
    for k in range(1, len(victims) + 1):
        try:
            plan, pred = attempt(victims[:k])
        except BudgetError:
            continue
        return plan, pred, victims[:k]
    raise AssertionError("unreachable: the last attempt is the one that fitted")


def evict(victims) -> None:
    for m in victims:
        log.info("chunkflow: %r takes back %s resident of a graph on %s called least recently; it is planned again on "
                 "its next call", m.budget, format_bytes(sum(RESIDENTS.entries[k].nbytes for k in m.held["residents"])),
                 m.device)
        m.evict()


def register(rt: GraphRuntime, config: ChunkFlowConfig, reads, activation_bytes: int) -> None:
    """After ``rt`` is built: it counts in its `MemoryBudget` from now on."""
    touch(rt)
    rt.activation_bytes = activation_bytes
    budget = _shared(config)
    if budget is None:
        return
    rt.budget = budget
    rt.floor_arena = streaming_floor(reads, config)
    if budget.bytes is None:   # "auto", resolved by this first graph
        budget.bytes = rt.plan.memory_budget
    budget.members.add(rt)


def usage(budget: MemoryBudget) -> dict[str, int]:
    members = _members(budget)
    keys = {k for m in members for k in m.held["residents"]}
    resident = sum(RESIDENTS.entries[k].nbytes for k in keys)
    arena, private = {}, 0
    for m in members:
        sizes = m.floor_arena if m.stale else dict(m.plan.arena_bytes)
        if m.shared_arena:
            for dt, n in sizes.items():
                arena[dt] = max(arena.get(dt, 0), n)
        else:
            private += sum(sizes.values())
    act = max((m.activation_bytes for m in members), default=0)
    out = dict(resident_bytes=resident, arena_bytes=sum(arena.values()) + private, activation_bytes=act,
               graphs=len(members))
    out["peak_bytes"] = out["resident_bytes"] + out["arena_bytes"] + act
    return out
