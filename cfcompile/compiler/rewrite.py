"""The chunkflow pass on Inductor's post-grad ATen graph: apply a `Plan`, in four named passes.

    find_reads_pass          where each planned weight is first / last read                      (finds)
    place_prefetches_pass    the node each prefetch goes in front of; arena lifetimes proven      (decides)
    insert_ops_pass          prefetch_ / wait_ / release_ ops, weights read as views of slots     (rewrites)
    schedule_table_pass      the dump's schedule table                                             (reports)

Each is a function ``(gm, ctx: RewriteContext) -> gm`` that draws its rewrite in its docstring; `pass_manager`
runs them (logging, timing, dumps, ``disable_passes``). The ops, before / after::

    w_q = placeholder()                          mm = aten.mm(x, aten.permute(w_q, [1, 0]))
    ->
    cfcompile.release_(slot_1)                                                   # block 1's reads are done
    cfcompile.prefetch_(slot_5, [slot_1, slot_4], host_5, src, dst, n, event=5)  # `prefetch_depth` groups ahead
    cfcompile.wait_(slot_3, event=3)                                             # group 3's chunks have landed
    w_q' = aten.as_strided(slot_3, w_q.shape, w_q.stride(), offset_in_group)

Each group has its own slot input so that identical blocks compile to identical kernels (a view's offset is baked
into the kernel). Slots of different groups may share arena bytes. After the last read of a group whose bytes a later
prefetch overwrites, ``release_`` mutates the slot (Inductor then realizes and schedules every earlier read of it
first; taking the readers as inputs instead would make Inductor write outputs it fuses away, `runtime.ops`). A
prefetch declares as mutated ("fences") the slots it overwrites (so it follows their release), the previous
prefetch's slot (copies keep plan order) and the slot whose wait is its issue point (it stays ahead of that wait); a
wait mutates its slot, so reads follow it. `check_arena_lifetimes` proves no prefetch overwrites bytes a pending read
still needs. Collectives are recognised by `costmodel.graph_costs.collective_role`, as the cost model does.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import types

import torch
import torch.fx as fx

from ..config import format_bytes
from ..costmodel.graph_costs import collective_waits
from ..costmodel.model import Prediction
from ..plan.inputs import InputLayout
from ..plan.ir import Plan

log = logging.getLogger(__name__)
aten = torch.ops.aten


class ArenaLifetimeError(RuntimeError):
    pass


@dataclasses.dataclass
class RewriteContext:
    """What the chunkflow passes share: the plan they apply, and what each pass finds for the next ones."""

    plan: Plan
    layout: InputLayout
    overlap: bool = True                    # config.overlap_copies
    prediction: Prediction | None = None    # for the schedule table's wait rows
    # find_reads_pass
    placeholders: list = dataclasses.field(default_factory=list)
    pos: dict = dataclasses.field(default_factory=dict)              # node -> position before any insertion
    reads: dict = dataclasses.field(default_factory=dict)            # group key -> [(WeightPlan, placeholder)]
    first_user: dict = dataclasses.field(default_factory=dict)       # group key -> its first reading node
    last_user: dict = dataclasses.field(default_factory=dict)        # group key -> the last node reading its bytes
    # place_prefetches_pass
    issue_at: dict = dataclasses.field(default_factory=dict)         # streamed j -> node its prefetch precedes
    tail_at: dict = dataclasses.field(default_factory=dict)          # wrapped j -> node of its next-call prefetch
    seg_at: dict = dataclasses.field(default_factory=dict)           # (j, segment) -> node after a collective
    items: list = dataclasses.field(default_factory=list)            # prefetches: (pos, next call?, j, segment)
    where: dict = dataclasses.field(default_factory=dict)            # (next call?, j, segment) -> node
    collective_waits: list = dataclasses.field(default_factory=list)
    # insert_ops_pass
    schedule: list = dataclasses.field(default_factory=list)         # one row per inserted op, then per read
    replaced: int = 0

    @property
    def streamed(self):
        return self.plan.streamed

    def copies_of(self, j: int, seg: int, nxt: int):
        g = self.streamed[j]
        if nxt or not g.segments:
            return g.copies
        cuts = [0, *(k for _, k in g.segments), len(g.copies)]
        return g.copies[cuts[seg]:cuts[seg + 1]]

    def overwrites(self, i: int) -> set[int]:
        """Groups whose bytes prefetch item ``i`` overwrites: earlier items' groups sharing its arena bytes (its own
        group only for a copy for the next call)."""
        _, nxt, j, _ = self.items[i]
        g = self.streamed[j]
        if nxt and g.next_arena_offset >= 0:   # its own second region: nobody else's bytes
            return set()
        return {k for _, _, k, _ in self.items[:i] if _overlap(self.streamed[k], g) and (k != j or nxt)}


def find_reads_pass(gm: fx.GraphModule, ctx: RewriteContext) -> fx.GraphModule:
    """Find where each planned weight is read; changes nothing.

        w_q = placeholder()                      # input w.input_index: a weight of group g
        t = aten.permute(w_q, [1, 0])            # views are followed ...
        mm = aten.mm(x, t)                       # ... to the first / last node really reading g's bytes
    """
    graph = gm.graph
    ctx.placeholders = list(graph.find_nodes(op="placeholder"))
    ctx.pos = pos = {n: i for i, n in enumerate(graph.nodes)}
    for w in ctx.plan.weights:
        ph = ctx.placeholders[w.input_index]
        val = ph.meta.get("val")
        if not isinstance(val, torch.Tensor) or tuple(val.shape) != w.shape:
            raise AssertionError(f"chunkflow: graph input {w.input_index} is {val!r}, the plan expected a weight of "
                                 f"shape {w.shape}; the post-grad graph's inputs do not match the Dynamo graph's")
        if ph.users:
            ctx.reads.setdefault(w.group, []).append((w, ph))
    ctx.first_user = {k: min((u for _, ph in rs for u in ph.users), key=pos.get) for k, rs in ctx.reads.items()}
    # The last node that really reads a group's bytes (through chains of views): the group's release_ goes after it.
    ctx.last_user = {k: max(_readers([ph for _, ph in rs]), key=pos.get) for k, rs in ctx.reads.items()}
    return gm


def place_prefetches_pass(gm: fx.GraphModule, ctx: RewriteContext) -> fx.GraphModule:
    """Decide the node each prefetch goes in front of and prove the arena's lifetimes; changes nothing.

        wait(g_{j-d})  <- prefetch(g_j) in front of it (the plan's issue point), later if a group sharing
                          g_j's arena bytes is still read there (the post-grad graph may read it later than planned)
        wait(g_w)      <- in the tail: prefetch(g_j) for the next call (wrap-around, GroupPlan.wrap_before)
        wait_tensor(c) <- right after it: the copies moved behind collective c (yield policy, GroupPlan.segments)
    """
    graph, pos, streamed = gm.graph, ctx.pos, ctx.streamed
    first_user, last_user = ctx.first_user, ctx.last_user
    start = next(n for n in graph.nodes if n.op != "placeholder")
    issue_at = ctx.issue_at
    for j, g in enumerate(streamed):
        if g.key not in first_user:
            continue
        anchor = g.issue_before
        node = start if anchor is None else first_user.get(streamed[anchor].key, start)
        issue_at[j] = min(node, first_user[g.key], key=pos.get)
        # The post-grad graph may read an earlier group later than the Dynamo graph did: never overwrite bytes a
        # pending read still needs, issue after it instead (still before this group's own first read).
        for k in sorted(issue_at):
            gk = streamed[k]
            if k != j and _overlap(gk, g) and pos[last_user[gk.key]] >= pos[issue_at[j]]:
                issue_at[j] = last_user[gk.key].next
        if pos[issue_at[j]] > pos[first_user[g.key]]:
            raise ArenaLifetimeError(
                f"chunkflow: group {g.key} is read while a group sharing its arena bytes is still live; the graph "
                f"reads its weights in an order the plan did not expect; please report it with the dump "
                f"(options={{'dump': DIR}}).")
    # Wrap-around: the prefetch of a wrapped group for the *next* call goes before the wait its plan names, in this
    # call's tail, and after the last read of every group whose bytes it overwrites (its own included).
    output = next(iter(graph.find_nodes(op="output")))
    for j, g in enumerate(streamed):
        if g.wrap_before is None or j not in issue_at:
            continue
        at = first_user.get(streamed[g.wrap_before].key, output)
        if g.next_arena_offset < 0:   # double-buffered: its next-call region is no other group's, nor read now
            for k, gk in enumerate(streamed):
                if gk.key in last_user and (k == j or _overlap(gk, g)) and pos[last_user[gk.key]] >= pos[at]:
                    at = last_user[gk.key].next
        ctx.tail_at[j] = at
    end = len(pos)
    check_arena_lifetimes(ctx.plan, {j: [(pos[n], pos[last_user[streamed[j].key]])] +
                                     ([(pos[ctx.tail_at[j]], end)]
                                      if j in ctx.tail_at and streamed[j].next_arena_offset < 0 else [])
                                     for j, n in issue_at.items()})

    # Yield policy: copies moved behind a collective are issued right after its wait (GroupPlan.segments); the
    # k-th collective launched in this graph is the k-th of the Dynamo graph the plan counted.
    ctx.collective_waits = waits = collective_waits(graph)
    for j, g in enumerate(streamed):
        for s_i, (c, _) in enumerate(g.segments, 1):
            if j not in issue_at or c >= len(waits):
                continue
            at = waits[c].next
            # never after the group's own first read (the wait must follow every copy), never before its issue point
            if pos[at] > pos[first_user[g.key]] or pos[at] < pos[issue_at[j]]:
                at = issue_at[j] if pos[at] < pos[issue_at[j]] else first_user[g.key]
            ctx.seg_at[j, s_i] = at

    # Prefetch items in graph order: (node, 0 = this call / 1 = next call, group, segment). A wrapped group's
    # in-call item copies only on the first call (phase 2); its tail item copies for the next call (phase 1).
    items = sorted([(pos[n], 0, j, 0) for j, n in issue_at.items()]
                   + [(pos[n], 1, j, 0) for j, n in ctx.tail_at.items()]
                   + [(pos[n], 0, j, s_i) for (j, s_i), n in ctx.seg_at.items()])
    ctx.where = {**{(0, j, 0): issue_at[j] for j in issue_at}, **{(1, j, 0): ctx.tail_at[j] for j in ctx.tail_at},
                 **{(0, j, s_i): n for (j, s_i), n in ctx.seg_at.items()}}
    # A group whose first chunks all moved behind a collective has nothing left to copy at its issue point.
    ctx.items = [it for it in items if ctx.copies_of(it[2], it[3], it[1])]
    return gm


def insert_ops_pass(gm: fx.GraphModule, ctx: RewriteContext) -> fx.GraphModule:
    """Insert the chunkflow ops where `place_prefetches_pass` decided, and read the weights from the device.

    Before::

        w_q = placeholder()                      # offloaded weight (UVA view of host memory)
        mm = aten.mm(x, aten.permute(w_q, [1, 0]))

    After::

        slot_3 = placeholder()                   # group 3's region of the arena (extra inputs, `InputLayout`)
        host_5 = placeholder()                   # group 5's host buffer
        cfcompile.release_(slot_1)                                                   # block 1's reads are done
        cfcompile.prefetch_(slot_5, [slot_1, slot_4], [wait], host_5, src, dst, n, event=5, overlap, phase)
        cfcompile.wait_(slot_3, event=3)                                             # group 3's chunks have landed
        w_q' = aten.as_strided(slot_3, w_q.shape, w_q.stride(), offset_in_group)
        mm = aten.mm(x, aten.permute(w_q', [1, 0]))

    Resident weights become ``as_strided`` views of their group's resident slot, right after the placeholders.
    """
    graph, pos, streamed, layout = gm.graph, ctx.pos, ctx.streamed, ctx.layout
    placeholders, first_user, items = ctx.placeholders, ctx.first_user, ctx.items
    fake_mode = torch._guards.detect_fake_mode([p.meta.get("val") for p in placeholders])
    groups = {g.key: g for g in ctx.plan.groups}
    start = next(n for n in graph.nodes if n.op != "placeholder")

    def node(target, args, val=None) -> fx.Node:
        n = graph.call_function(target, args)
        n.meta["val"] = val
        return n

    def view(w, slot: fx.Node, base: int) -> fx.Node:
        slot_val = slot.meta["val"]  # as_strided's offset counts from the start of the slot's storage
        args = (slot, list(w.shape), list(w.stride),
                slot_val.storage_offset() + (w.offset - base) // slot_val.element_size())
        with fake_mode:
            fake = aten.as_strided.default(slot_val, *args[1:])
        return node(aten.as_strided.default, args, fake)

    def fences(i: int) -> list[fx.Node]:
        """Slots whose order prefetch item i keeps: those it overwrites, the previous item's, its issue point's."""
        _, nxt, j, _ = items[i]
        ks = ctx.overwrites(i)
        if i:
            ks.add(items[i - 1][2])
        anchor = streamed[j].wrap_before if nxt else streamed[j].issue_before
        if anchor is not None and streamed[anchor].key in first_user and anchor != j:
            ks.add(anchor)
        return [placeholders[layout.slots[k]] for k in sorted(ks)]

    # Each prefetch reads the output of the last collective wait before it: Inductor's schedulers sink waits (torch
    # 2.14 moved them past independent prefetches, into the window) but never past a reader of their output.
    waited = [w for w in ctx.collective_waits if isinstance(w.meta.get("val"), torch.Tensor)]

    def after(at: fx.Node) -> list[fx.Node]:
        return [w for w in waited if pos[w] < pos[at]][-1:]

    ops_before: dict[fx.Node, list] = {}
    for i, (_, nxt, j, seg) in enumerate(items):
        ops_before.setdefault(ctx.where[nxt, j, seg], []).append(("prefetch", j, i))
    for j, g in enumerate(streamed):
        if g.key in first_user:
            ops_before.setdefault(first_user[g.key], []).append(("wait", j, None))

    with graph.inserting_before(start):
        for k, rs in ctx.reads.items():
            for w, ph in rs:
                if w.location == "resident":
                    ph.replace_all_uses_with(view(w, placeholders[layout.residents[k]], groups[k].resident_range[0]))
                    ctx.replaced += 1
    for target, ops in sorted(ops_before.items(), key=lambda kv: pos[kv[0]]):
        with graph.inserting_before(target):
            for kind, j, i in ops:
                g = streamed[j]
                slot = placeholders[layout.slots[j]]
                if kind == "prefetch" and items[i][1] and j in layout.next_slots:
                    slot = placeholders[layout.next_slots[j]]   # double buffering: the other region
                row = dict(op=kind, group=g.key, chunks=[c.chunk for c in g.copies], bytes=g.streamed_bytes)
                if kind == "prefetch":
                    _, nxt, _, seg = items[i]
                    phase = 1 if nxt else (2 if j in ctx.tail_at else 0)
                    copies = ctx.copies_of(j, seg, nxt)
                    row["op"] = ("prefetch", "prefetch-next-call", "prefetch-if-first-call")[phase]
                    if seg:
                        row["op"] = "prefetch-after-collective"
                    row["chunks"], row["bytes"] = [c.chunk for c in copies], sum(c.nbytes for c in copies)
                    item = slot.meta["val"].element_size()
                    base = g.stream_range[0]
                    n = node(torch.ops.cfcompile.prefetch_.default, (
                        slot, fences(i), after(target),
                        placeholders[layout.next_hosts[j] if nxt else layout.hosts[j]],
                        [c.src_offset // item for c in copies], [(c.src_offset - base) // item for c in copies],
                        [c.nbytes // item for c in copies], j, ctx.overlap, phase))
                else:
                    n = node(torch.ops.cfcompile.wait_.default, (slot, j, ctx.overlap))
                    for w, ph in ctx.reads[g.key]:
                        if w.location == "arena":
                            ph.replace_all_uses_with(view(w, slot, g.stream_range[0]))
                            ctx.replaced += 1
                ctx.schedule.append(dict(node=n.name, **row))
    # A release after the last read of each streamed group that a later prefetch overwrites.
    overwritten = set().union(*(ctx.overwrites(i) for i in range(len(items))))
    for k in sorted(overwritten):
        g = streamed[k]
        with graph.inserting_after(ctx.last_user[g.key]):
            n = node(torch.ops.cfcompile.release_.default, (placeholders[layout.slots[k]],))
        ctx.schedule.append(dict(node=n.name, op="release", group=g.key, chunks=[], bytes=0))
    graph.lint()
    return gm


def schedule_table_pass(gm: fx.GraphModule, ctx: RewriteContext) -> fx.GraphModule:
    """The schedule table of the dump (`report.dump.write_scheduled`): the inserted ops and each group's first and
    last read in graph order, with the arena bytes in use and the cost model's prediction on wait rows; changes
    nothing."""
    plan, schedule = ctx.plan, ctx.schedule
    index_of = {g.key: j for j, g in enumerate(ctx.streamed)}
    for k in ctx.reads:
        schedule.append(dict(node=ctx.first_user[k].name, op="first-read", group=k, chunks=[], bytes=0))
        schedule.append(dict(node=ctx.last_user[k].name, op="last-read", group=k, chunks=[], bytes=0))
    order = {n.name: i for i, n in enumerate(gm.graph.nodes)}
    schedule.sort(key=lambda r: (order[r["node"]], r["op"] != "last-read"))
    by_key = {p.key: p for p in ctx.prediction.groups} if ctx.prediction is not None else {}
    in_use = 0
    for row in schedule:
        row["prediction"] = by_key.get(row["group"]) if row["op"] == "wait" else None
        if row["op"].startswith("prefetch"):
            in_use += row["bytes"]
        elif row["op"] == "last-read" and row["group"] in index_of:
            in_use -= ctx.streamed[index_of[row["group"]]].streamed_bytes
        row["arena_in_use"] = in_use
    log.info("chunkflow: rewrote %d weight reads in %d groups: %d prefetch + %d wait ops, %s streamed per call, "
             "arena %s, resident %s", ctx.replaced, len(ctx.reads), len(ctx.issue_at),
             sum(1 for r in schedule if r["op"] == "wait"), format_bytes(plan.streamed_bytes),
             format_bytes(plan.total_arena_bytes), format_bytes(plan.total_resident_bytes))
    return gm


#: The chunkflow passes in order (`compiler.pass_manager` runs them; ``disable_passes`` names them), and the
#: passes each needs (a disabled pass skips those that need it).
PASSES = (find_reads_pass, place_prefetches_pass, insert_ops_pass, schedule_table_pass)
REQUIRES = {"place_prefetches": ("find_reads",), "insert_ops": ("place_prefetches",),
            "schedule_table": ("find_reads",)}


def apply_plan(graph: fx.Graph, plan: Plan, layout: InputLayout, overlap: bool = True,
               prediction: Prediction | None = None) -> list[dict]:
    """Every pass on ``graph`` in place, without the manager. Returns the schedule: one row per inserted op and per
    first/last read of each group; wait rows carry the cost model's prediction for their group when there is one."""
    ctx = RewriteContext(plan, layout, overlap, prediction)
    gm = graph.owning_module or types.SimpleNamespace(graph=graph)   # the passes use gm.graph
    for p in PASSES:
        p(gm, ctx)
    return ctx.schedule


def clobbers(plan: Plan) -> dict:
    """For each streamed group j, the earlier streamed groups whose arena bytes its prefetch overwrites; and for
    each wrapped group, under the key ``("next", j)``, the groups its prefetch for the next call overwrites (every
    group sharing its bytes, itself included: the tail comes after all of them)."""
    st = plan.streamed
    out: dict = {j: [k for k in range(j) if _overlap(st[k], st[j])] for j in range(len(st))}
    out.update({("next", j): [k for k in range(len(st)) if _overlap(st[k], st[j])]
                for j in range(len(st)) if st[j].wrap_before is not None and st[j].next_arena_offset < 0})
    return out


def _is_view(n: fx.Node) -> bool:
    t = n.target
    return n.op == "call_function" and (t is operator.getitem or getattr(t, "is_view", False))


def _readers(weights: list[fx.Node]) -> list[fx.Node]:
    """Tensor-valued nodes that read ``weights``, following view ops and unpacking multi-output readers."""
    out: dict[fx.Node, None] = {}
    todo = list(weights)
    while todo:
        for u in todo.pop().users:
            if _is_view(u):
                todo.append(u)
            elif isinstance(u.meta.get("val"), torch.Tensor):
                out[u] = None
            else:  # e.g. native_layer_norm -> (out, mean, rstd): its getitems hold the values
                out.update((g, None) for g in u.users
                           if g.target is operator.getitem and isinstance(g.meta.get("val"), torch.Tensor))
    return list(out)


def _overlap(a, b) -> bool:
    """Do two streamed groups share arena bytes?"""
    return a.dtype == b.dtype and a.arena_offset < b.arena_offset + b.streamed_bytes and b.arena_offset < a.arena_offset + a.streamed_bytes


def check_arena_lifetimes(plan: Plan, spans: dict[int, list[tuple[int, int]]]) -> None:
    """No two streamed groups may hold the same arena bytes while both are live. ``spans[j]``: graph positions
    (issue node, last read), plus (tail issue node, end) for a wrapped group's copy for the next call."""
    streamed = plan.streamed
    live = sorted(spans)
    for a_i, a in enumerate(live):
        ga = streamed[a]
        for b in live[a_i + 1:]:
            gb = streamed[b]
            if not _overlap(ga, gb):
                continue
            # Prefetches are inserted before their issue node and reads sit at their nodes: disjoint iff one's
            # last read comes strictly before the other's issue node.
            for s_a, e_a in spans[a]:
                for s_b, e_b in spans[b]:
                    if not (e_a < s_b or e_b < s_a):
                        raise ArenaLifetimeError(
                            f"chunkflow: groups {ga.key} and {gb.key} share arena bytes but are live at the same "
                            f"time in the post-grad graph ({s_a}..{e_a} vs {s_b}..{e_b}); the graph reads its "
                            f"weights in an order the plan did not expect; please report it with the dump "
                            f"(options={{'dump': DIR}}), or pass wrap_around=False.")
