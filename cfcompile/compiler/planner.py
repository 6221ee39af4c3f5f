"""Plan a graph with what the device holds: the planner (`plan.search`) driven by the runtime's registry.

    plan_graph   what other graphs hold (`runtime.budget.device_state`) -> `plan_with_model`; under a shared
                 `MemoryBudget`, a graph that does not fit takes resident chunks back from the graphs called least
                 recently (as few as make it fit)
    evict        take them back, once the caller is about to allocate
"""

from __future__ import annotations

import gc
import logging

import torch

from ..config import ChunkFlowConfig, format_bytes
from ..plan.search import BudgetError, plan_with_model
from ..runtime import budget as budgets
from ..runtime.arena import RESIDENTS, GraphRuntime, members

log = logging.getLogger(__name__)


def plan_graph(reads, config: ChunkFlowConfig, costs, profile, device: torch.device, *, free_bytes=None,
               collective_policy: str = "overlap", replanning: GraphRuntime | None = None):
    """`plan_with_model` with what the device holds; under a `MemoryBudget` a new graph that does not fit takes
    resident chunks back from the budget's other graphs. Returns (plan, prediction, graphs to evict); nothing is
    changed here: the caller evicts them once it is about to allocate."""
    budget = budgets.shared(config)
    if RESIDENTS.entries.keys() & budgets.keys_of(reads, device).keys() or budget is not None and members(budget):
        gc.collect()   # graphs dropped in reference cycles (e.g. after torch._dynamo.reset()) hold memory until then
    budgets.check(reads, device, config, replanning)

    def attempt(evicted=()):
        state = budgets.device_state(reads, device, config, exclude=replanning, evicted=evicted)
        return plan_with_model(reads, config, costs, profile, free_bytes=free_bytes,
                               collective_policy=collective_policy, state=state)

    try:
        return (*attempt(), ())
    except BudgetError:
        victims = tuple(m for m in members(budget, replanning) if not m.stale) if budget is not None else ()
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
