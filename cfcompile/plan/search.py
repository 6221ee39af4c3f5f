"""Choose residency, issue points and chunk size with the cost model.

    resident_fraction=f   round(f * chunks) resident chunks, placed greedily where the model says they save most
    memory_budget=B       chunk size, resident chunks and issue points that minimise the predicted step time while
                          resident + arena + activations <= B
    neither               nothing resident; issue points from the model

What is already on the device comes in as a `DeviceState`: chunks another graph of the same model keeps resident
are resident here too (at no new memory; the least this graph keeps), and under a shared `MemoryBudget` the other
graphs' resident bytes, arena and activations count against the budget as well (`runtime.budget` builds it).

The greedy step: simulate the call (`costmodel.model.simulate`), take the streamed group whose copy is most
exposed (largest stall, then largest copy time minus the compute under it) and make one more of its chunks
resident; with a budget, skip moves that would not fit. The streamed bytes end up spread over the step in
proportion to the compute that hides them, not simply taken off the first blocks. Then, per group that still
stalls, issue its prefetch one streamed group earlier while that lowers the predicted step time (at most
`MAX_AUTO_DEPTH` ahead, within the budget): "as late as still hides the copy, as early as the arena allows".
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Sequence

from ..config import ChunkFlowConfig, format_bytes
from ..costmodel.graph_costs import GraphCosts
from ..costmodel.model import Prediction, StreamedGroup, simulate
from ..costmodel.profiles import DeviceProfile
from ..pinned import align
from .ir import BUDGET_HEADROOM, NO_STATE, BudgetError, DeviceState, Plan, WeightRead  # noqa: F401  (re-exported)
from .layout import Layout, Spec, build_plan, lay_out, resident_counts, specs_of
from .resolve import resolve

log = logging.getLogger(__name__)

#: Deepest prefetch the model may choose with ``prefetch_depth="auto"``.
MAX_AUTO_DEPTH = 3


class _Search:
    """State of the greedy search for one chunk size."""

    def __init__(self, specs: list[Spec], cumulative: list[float], profile: DeviceProfile, activations: int,
                 fixed_depth: int | None, wrap: bool, collectives=(), policy: str = "overlap",
                 state: DeviceState = NO_STATE, shared_arena: bool = True):
        self.specs, self.cum, self.profile, self.activations = specs, cumulative, profile, activations
        self.wrap, self.collectives, self.policy = wrap, tuple(collectives), policy
        self.fixed_depth = fixed_depth
        self.state, self.shared_arena = state, shared_arena
        self.counts = [s.n_held for s in specs]   # held chunks are resident already
        self.depths: dict[str, int] = {}

    def need(self, p: Prediction) -> int:
        """Device bytes at the peak of whichever graph of the budget peaks highest: this graph's prediction, with
        the other graphs' activations where they are larger."""
        return p.peak_bytes + max(0, self.state.activation_bytes - p.activation_bytes)

    def evaluate(self, counts=None, depths=None) -> tuple[Prediction, Layout]:
        counts = self.counts if counts is None else counts
        depths = self.depths if depths is None else depths
        layout = lay_out(self.specs, counts, depths, 1 if self.fixed_depth is None else self.fixed_depth, self.wrap)
        groups = []
        for j, i in enumerate(layout.streamed):
            s = self.specs[i]
            _, _, _, (a, b) = s.split(counts[i])
            anchor, wrap = layout.anchors[j], layout.wraps[j]
            groups.append(StreamedGroup(s.key, s.first, self.specs[layout.streamed[anchor]].first
                                        if anchor is not None else 0, b - a, s.copies(counts[i]),
                                        self.specs[layout.streamed[wrap]].first if wrap is not None else None))
        layout.segments = {}
        windows = [(c.launch, c.wait + 1, c.ms) for c in self.collectives]
        sizes = [self.specs[i].copy_sizes(counts[i]) for i in layout.streamed]

        resident = layout.resident_bytes + self.state.other_resident_bytes
        arena = self.state.arena_total(layout.arena_sizes, self.shared_arena)

        def run(groups):
            return simulate(groups, self.cum, self.profile, resident_bytes=resident, arena_bytes=arena,
                            activation_bytes=self.activations, windows=windows)

        if self.policy == "yield" and self.collectives:
            layout.segments, groups = _split_around_collectives(groups, sizes, self.cum, self.collectives,
                                                                self.profile)
            pred = run(groups)
            # The first split plays copies forward in compute-only time; stalls and contention move them. Move any
            # chunk the full model still starts inside a window behind it, a few rounds at most.
            for _ in range(8):
                moved = _move_chunks_out_of_windows(pred, groups, sizes, self.collectives, layout.segments)
                if not moved:
                    break
                groups = [_with_parts(g, layout.segments.get(j, ()), sizes[j], self.collectives)
                          for j, g in enumerate(groups)]
                pred = run(groups)
            return pred, layout
        return run(groups), layout

    def _ranked(self, pred: Prediction, layout: Layout) -> list[tuple[int, int]]:
        """(spec index, chunks to make resident) of streamed groups, most exposed first. The step closes half of
        the group's exposed copy time (at least one chunk), so the search takes tens of moves, not thousands."""
        order = []
        for g, i in zip(pred.groups, layout.streamed):
            excess_ms = max(g.stall_ms, g.copy_ms - g.cover_ms)
            step = max(1, math.ceil(excess_ms * self.profile.h2d_gbs * 1e6 / self.specs[i].cs / 2))
            order.append((-g.stall_ms, -(g.copy_ms - g.cover_ms), i, step))
        return [(i, step) for *_, i, step in sorted(order)]

    def add_residency(self, target: int | None, budget: int | None, cap: int | None = None) -> None:
        """Greedy moves of one resident chunk at a time, until ``target`` chunks are chosen, or (with a budget)
        no stall is left, nothing more fits or ``cap`` chunks are resident."""
        pred, layout = self.evaluate()
        blocked: set[int] = set()  # groups where even one more chunk did not fit: memory only grows from here
        while True:
            if target is not None and sum(self.counts) >= target:
                return
            if cap is not None and sum(self.counts) >= cap:
                return
            if target is None and pred.stall_ms <= 1e-6:
                return
            moved = False
            for i, step in self._ranked(pred, layout):
                if i in blocked:
                    continue
                room = len(self.specs[i].chunk_ids) - self.counts[i]
                if cap is not None:
                    room = min(room, cap - sum(self.counts))
                if target is not None:  # a fixed number of chunks: one at a time places them best
                    step = 1
                for k in sorted({min(step, room), 1}, reverse=True):
                    if k <= 0:
                        continue
                    trial = list(self.counts)
                    trial[i] += k
                    p, lay = self.evaluate(trial)
                    if budget is not None and self.need(p) > budget:
                        if k == 1:
                            blocked.add(i)
                        continue
                    self.counts, pred, layout, moved = trial, p, lay, True
                    break
                if moved:
                    break
            if not moved:  # nothing fits, or every streamed group is resident already
                return

    def deepen(self, budget: int | None) -> None:
        """Issue stalling prefetches earlier while the predicted step time improves (and the budget allows)."""
        if self.fixed_depth is not None:
            return
        pred, layout = self.evaluate()
        improved = True
        while improved:
            improved = False
            for g, i in sorted(zip(pred.groups, layout.streamed), key=lambda t: -t[0].stall_ms):
                if g.stall_ms <= 1e-6:
                    break
                key = self.specs[i].key
                d = self.depths.get(key, 1)
                if d >= MAX_AUTO_DEPTH:
                    continue
                trial = {**self.depths, key: d + 1}
                p, lay = self.evaluate(depths=trial)
                if p.step_ms < pred.step_ms * (1 - 1e-3) and (budget is None or self.need(p) <= budget):
                    self.depths, pred, layout, improved = trial, p, lay, True
                    break


def _split_around_collectives(groups: list[StreamedGroup], copy_sizes: list[list[int]], cum: list[float],
                              collectives, profile: DeviceProfile):
    """Yield policy: move the chunk copies that would start inside a collective's window behind it.

    Copies are played forward on the copy stream in issue order, in compute-only time. A chunk may start only
    before the next window opens (the collective's launch); the one in flight then may finish inside it, the rest
    are issued right after the collective's wait (``prefetch_`` then waits for the compute stream, which has waited
    for the collective). Only collectives waited for before the group's first read can take its copies.
    Returns {streamed index: ((collective ordinal, first copy index), ...)} and the groups with their parts."""
    windows = [(cum[c.launch], cum[c.wait + 1], c.wait + 1) for c in collectives]
    order = sorted(range(len(groups)), key=lambda j: (groups[j].issue if groups[j].wrap_issue is None else -1, j))
    cursor = 0.0
    segments: dict[int, tuple[tuple[int, int], ...]] = {}
    out = list(groups)
    for j in order:
        g = groups[j]
        if g.wrap_issue is not None:  # copied in the previous call's tail: not split
            continue
        t = max(cum[g.issue], cursor)
        parts = [[g.issue, 0, 0]]          # (issue node, bytes, copies)
        segs = []
        for k, size in enumerate(copy_sizes[j]):
            w = next((c for c, (lo, hi, after) in enumerate(windows) if hi > t and after <= g.first), None)
            if w is not None and t >= windows[w][0]:   # inside the window: wait for it to close
                lo, hi, after = windows[w]
                if not segs or segs[-1][0] != w:
                    segs.append((w, k))
                    parts.append([after, 0, 0])
                t = hi
            parts[-1][1] += size
            parts[-1][2] += 1
            t += profile.copy_ms(size, 1)
        cursor = t
        if segs:
            segments[j] = tuple(segs)
            out[j] = dataclasses.replace(g, parts=tuple((n, b, c) for n, b, c in parts if c))
    return segments, out


def _with_parts(g: StreamedGroup, segments, sizes: list[int], collectives) -> StreamedGroup:
    if not segments or g.wrap_issue is not None:
        return dataclasses.replace(g, parts=())
    cuts = [0, *(k for _, k in segments), len(sizes)]
    nodes = [g.issue, *(collectives[c].wait + 1 for c, _ in segments)]
    parts = tuple((n, sum(sizes[a:b]), b - a) for n, a, b in zip(nodes, cuts, cuts[1:]) if b > a)
    return dataclasses.replace(g, parts=parts)


def _move_chunks_out_of_windows(pred: Prediction, groups, sizes, collectives, segments: dict) -> bool:
    """For each group, the first chunk the prediction starts inside a collective's window (other than the chunk
    in flight at its launch) and all after it go behind that collective, when it is waited for before the group's
    first read. Updates ``segments``; True if anything moved."""
    moved = False
    for j, (g, p) in enumerate(zip(groups, pred.groups)):
        if g.wrap_issue is not None:
            continue
        segs = dict(segments.get(j, ()))                  # collective -> first copy
        for m, t in enumerate(p.chunk_starts):
            w = next((w for w, (lo, hi) in enumerate(pred.windows) if lo < t < hi - 1e-9), None)
            if w is None or collectives[w].wait + 1 > g.first or segs.get(w) is not None and segs[w] <= m:
                continue
            if m in segs.values():                        # already the first chunk of a moved part
                continue
            segs[w] = m
            moved = True
            break
        if moved:
            # parts must stay in copy order: later collectives take later chunks
            order = sorted(segs.items(), key=lambda cm: (cm[1], cm[0]))
            clean, last_c = [], -1
            for c, m in order:
                if c > last_c:
                    clean.append((c, m))
                    last_c = c
            segments[j] = tuple(clean)
            return True
    return moved


def plan_with_model(reads: Sequence[WeightRead], config: ChunkFlowConfig, costs: GraphCosts,
                    profile: DeviceProfile, *, free_bytes: int | None = None,
                    collective_policy: str = "overlap", state: DeviceState = NO_STATE) -> tuple[Plan, Prediction]:
    """The plan the cost model prefers under ``config`` (see the module docstring) and its prediction.

    ``free_bytes`` resolves ``memory_budget="auto"`` (`resolve`); ``collective_policy`` is the resolved policy (yield or
    overlap) for copies around the graph's collectives; ``state`` is what is on the device already (the
    prediction's resident / arena bytes include it)."""
    if config.schedule == "layerwise":
        return _layerwise(reads, config, costs, profile)
    r = resolve(config, free_bytes=free_bytes)
    budget = user_budget = r.memory_budget
    if budget is not None:
        budget = int(budget * (1 - BUDGET_HEADROOM))
    fixed_depth = r.prefetch_depth
    cumulative = costs.cumulative()
    activations = costs.peak_activation_bytes
    sizes = r.chunk_sizes

    best = None
    minimum = None
    for cs in sizes:
        specs = specs_of(reads, cs, state.held)
        search = _Search(specs, cumulative, profile, activations, fixed_depth, config.wrap_around,
                         costs.collectives, collective_policy, state, config.shared_arena)
        base, _ = search.evaluate()
        if budget is not None and search.need(base) > budget and fixed_depth is None:
            # Double buffering does not fit: one block at a time (copies no longer overlap compute) may.
            search = _Search(specs, cumulative, profile, activations, 0, config.wrap_around, costs.collectives,
                             collective_policy, state, config.shared_arena)
            base, _ = search.evaluate()
        if budget is not None and search.need(base) > budget:
            if minimum is None or search.need(base) < minimum[0]:
                minimum = (search.need(base), base)
            continue
        n_chunks = sum(len(s.chunk_ids) for s in specs)
        if budget is None:
            rf = r.resident_fraction
            target = round(rf * n_chunks)
            # The same counts as without a model, placed by the model: how many per group it decides.
            search.add_residency(target, None)
            if sum(search.counts) < target:  # everything streamed is resident already
                search.counts = [max(a, s.n_held) for a, s in
                                 zip(resident_counts([len(s.chunk_ids) for s in specs], rf), specs)]
        else:
            cap = config.max_resident_fraction
            search.add_residency(None, budget, cap=None if cap is None else max(
                sum(s.n_held for s in specs), round(cap * n_chunks)))   # chunks held by other graphs: free
        search.deepen(budget)
        pred, layout = search.evaluate()
        key = (round(pred.step_ms, 3), pred.peak_bytes)
        if best is None or key < best[0]:
            chosen = sum(search.counts)
            rf_used = chosen / n_chunks if budget is not None or state.held else r.resident_fraction
            depth = max([1 if search.fixed_depth is None else search.fixed_depth, *search.depths.values()])
            best = (key, build_plan(specs, search.counts, layout, config, cs, rf_used, depth,
                                user_budget if config.memory_budget is not None else None, layout.segments,
                                collective_policy), pred)
    if best is None:
        assert minimum is not None
        need, base = minimum
        needed = math.ceil(need / (1 - BUDGET_HEADROOM))
        held = f" + resident {format_bytes(base.resident_bytes)} already on the device" if base.resident_bytes else ""
        raise BudgetError(
            f"memory_budget {format_bytes(user_budget)} is below what this graph needs with nothing "
            f"{'more ' if held else ''}resident: {format_bytes(need)} (arena {format_bytes(base.arena_bytes)} for the "
            f"largest blocks + activations {format_bytes(need - base.arena_bytes - base.resident_bytes)}{held}, "
            f"estimated) plus {BUDGET_HEADROOM:.0%} headroom; raise the budget to at least {format_bytes(needed)}, or "
            f"shorten the sequence{'. ' + state.holders if state.holders else ''}", needed)
    _, plan, pred = best
    log.info("chunkflow: cost model (%s) chose chunk %s, %d of %d chunks resident, prefetch depth <= %d: predicted "
             "%.2f ms per call (compute %.2f ms, stalls %.2f ms), peak %s", profile.name,
             format_bytes(plan.chunk_size), sum(c.resident for c in plan.chunks), len(plan.chunks),
             plan.prefetch_depth, pred.step_ms, pred.compute_ms, pred.stall_ms, format_bytes(pred.peak_bytes))
    return plan, pred


def _layerwise(reads, config: ChunkFlowConfig, costs: GraphCosts, profile: DeviceProfile):
    """SGLang-style layerwise offloading inside the same backend, for comparisons in one run: each block is copied
    whole, one block ahead, nothing resident, no wrap-around, no regard for collectives."""
    largest = max(r.group.nbytes for r in reads)
    cs = align(largest)
    specs = specs_of(reads, cs)
    counts = [0] * len(specs)
    layout = lay_out(specs, counts, {}, 1, False)
    plan = build_plan(specs, counts, layout, config, cs, 0.0, 1, None, None, "overlap", "layerwise")
    return plan, predict_plan(plan, costs, profile)


def predict_plan(plan: Plan, costs: GraphCosts, profile: DeviceProfile) -> Prediction:
    """The model's prediction for an existing plan (e.g. one made without the model)."""
    st = plan.streamed
    groups = [_with_parts(StreamedGroup(g.key, g.first_use, st[g.issue_before].first_use if g.issue_before is not None
                                        else 0, g.streamed_bytes, len(g.copies),
                                        st[g.wrap_before].first_use if g.wrap_before is not None else None),
                          g.segments, [c.nbytes for c in g.copies], costs.collectives) for g in st]
    return simulate(groups, costs.cumulative(), profile, resident_bytes=plan.total_resident_bytes,
                    arena_bytes=plan.total_arena_bytes, activation_bytes=costs.peak_activation_bytes,
                    windows=[(c.launch, c.wait + 1, c.ms) for c in costs.collectives])


def block_spans(plan: Plan, costs: GraphCosts) -> list[tuple[str, float, float]]:
    """(group name, start, end) in compute-only ms: each group from its first read to the next group's first read
    (the prologue before the first group and the epilogue after the last are blocks of their own)."""
    cum = costs.cumulative()
    firsts = sorted((g.first_use, g.key.rsplit(":", 1)[0]) for g in plan.groups)
    out, prev = [], ("prologue", 0)
    for first, name in firsts:
        if cum[first] > cum[prev[1]] or prev[0] != "prologue":
            out.append((prev[0], cum[prev[1]], cum[first]))
        prev = (name, first)
    out.append((prev[0], cum[prev[1]], cum[-1]))
    return [b for b in out if b[2] > b[1]]
