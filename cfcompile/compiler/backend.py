"""The ``chunkflow`` torch.compile backend: Dynamo graph -> AOTAutograd -> Inductor, with the chunkflow pass.

    torch.compile(model, backend="chunkflow", options={...})
      1. find the graph inputs that are offloaded weights (by data pointer, `plan.analysis`)
      2. plan chunks, residency, issue points and arena offsets (`plan.search`, driven by `compiler.planner`),
         counting what other graphs hold on the device (`runtime.budget`: the model's resident chunks, a shared
         `MemoryBudget`)
      3. take the arena and resident copies for this graph from the device pools, shared with other graphs
         (`GraphRuntime`)
      4. append arena / resident / host-group buffers as extra graph inputs (`plan.inputs.InputLayout`) and call
         Inductor's `compile_fx` with the rewrite installed as `post_grad_custom_post_pass` (`compiler.rewrite`)
      5. return a callable that passes the extra inputs on every call; `compiled_graphs()` reports one `GraphInfo`
         per live graph

A graph that reads no offloaded weight is compiled by plain Inductor (with the user's Inductor patches).
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx

from ..runtime import budget as shared
from .planner import evict, plan_graph
from ..runtime import timing
from ..runtime.arena import GraphRuntime, NoRoom
from ..runtime.binding import Binder, LayoutMismatch, source_names
from ..runtime.ops import exclusive
from ..config import CUDAGRAPHS_HINT, ChunkFlowConfig, MemoryBudget, format_bytes
from ..costmodel.graph_costs import estimate_costs
from ..costmodel import topology
from ..costmodel.profiles import resolve_profile
from ..report.dump import new_dump_dir, write_plan, write_prediction
from ..plan.analysis import find_weight_reads
from ..plan.search import block_spans
from ..plan.inputs import InputLayout
from ..plan.layout import lean_arena
from ..plan.resolve import free_bytes, resolve
from .pass_manager import ChunkflowPass, check_disabled
from .. import _compat

_compat.apply()   # before the first trace: torch.compile imports the backend when it looks up "chunkflow"

log = logging.getLogger(__name__)


def _with_extra_inputs(gm: fx.GraphModule, names: Sequence[str]) -> fx.GraphModule:
    """A copy of the Dynamo graph with more placeholders at the end (Dynamo's own graph must stay untouched)."""
    graph = fx.Graph()
    out = graph.graph_copy(gm.graph, {})
    old = list(gm.graph.find_nodes(op="placeholder"))
    new = list(graph.find_nodes(op="placeholder"))
    with graph.inserting_after(new[-1] if new else None):
        for name in reversed(names):
            n = graph.placeholder(name)
            n._dynamo_source = None  # no user-visible source: AOTAutograd accepts that for lifted inputs
            n.meta["tensor_dict"] = {"_dynamo_static_input_type": "unguarded"}
    graph.output(out)
    result = fx.GraphModule(gm, graph)
    result.meta.update(gm.meta)
    for a, b in zip(old, new):
        b._dynamo_source = getattr(a, "_dynamo_source", None)
    if hasattr(gm, "_param_name_to_source"):
        result._param_name_to_source = gm._param_name_to_source
    return result


def _model_budget(config: ChunkFlowConfig, groups) -> ChunkFlowConfig:
    """A plain ``memory_budget`` (bytes) is the model's: every graph over the same offloaded model (the block graphs
    of ``compile_repeated_blocks``, the pieces of a graph break, other resolutions) plans under one implicit
    `MemoryBudget` of that size, kept on the model's host store. Planned on its own, each block graph would fill
    the budget by itself (measured: 12.65 GiB peak under "12GiB" for a regional Flux)."""
    if not isinstance(config.memory_budget, int):
        return config
    stores = {id(s): s for s in (g.store() for g in groups if g.store is not None) if s is not None}
    stores = list(stores.values())
    if not stores:   # groups built outside `offload` (planning on the meta device)
        return config
    store = min(stores, key=lambda s: s.groups[0].key)   # a graph over two models: the same store every time
    budget = store.budgets.get(config.memory_budget)
    if budget is None:
        budget = store.budgets[config.memory_budget] = MemoryBudget(config.memory_budget)
        budget.implicit = True
    return dataclasses.replace(config, memory_budget=budget)


def _from_rank0(obj):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _agree_across_ranks(profile, free: int | None, policy: str):
    """Rank 0's device profile and policy, and the smallest free memory of all ranks: the plan depends only on what
    every rank shares (the graph, the weights' layout, these), so every rank makes the same one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return profile, free, policy
    profile, policy = _from_rank0((profile, policy))
    if free is not None:
        frees = [None] * dist.get_world_size()
        dist.all_gather_object(frees, free)
        free = min(f for f in frees if f is not None)
    return profile, free, policy


def chunkflow(gm: fx.GraphModule, example_inputs: Sequence[Any], *, options: dict | None = None,
              mode: str | None = None) -> Callable:
    """The backend function registered as ``"chunkflow"`` (entry point ``torch_dynamo_backends``)."""
    from torch._inductor.compile_fx import compile_fx

    config = ChunkFlowConfig.from_options(options, mode)
    check_disabled(config.disable_passes)
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in example_inputs):
        raise RuntimeError("chunkflow is an inference backend: call the compiled model under torch.no_grad() or "
                           "torch.inference_mode() (this graph would need gradients)")
    reads = find_weight_reads(gm, example_inputs)
    patches = config.inductor_patches()
    if not reads:
        log.info("chunkflow: graph reads no offloaded weight; compiling it with plain Inductor")
        return compile_fx(gm, example_inputs, config_patches=patches)

    # Inductor's reorder_for_locality sinks producers toward their consumers, which interleaves the reads of
    # independent weights (e.g. the embedders) and breaks the block order the plan is built on.
    patches = {"reorder_for_locality": False, **patches}
    from torch._inductor import config as inductor_config

    if patches.get("triton.cudagraphs", inductor_config.triton.cudagraphs):
        raise ValueError(f"chunkflow: torch._inductor.config.triton.cudagraphs is on for a graph that streams "
                         f"offloaded weights. {CUDAGRAPHS_HINT} (Set torch._inductor.config.triton.cudagraphs = "
                         f"False.)")
    groups: dict[str, Any] = {}
    for r in reads:   # the plan tells groups apart by name: two models' "blocks.0" would be taken for one
        if groups.setdefault(r.group.key, r.group) is not r.group:
            raise ValueError(f"chunkflow: this graph reads two offloaded models that both have a weight group "
                             f"{r.group.key!r}; one graph can stream only one group of a name. Compile each model on "
                             f"its own (torch.compile(model) for each, not one function calling both); they still "
                             f"share the arena, the copy stream and, with a cfcompile.MemoryBudget, one budget.")
    config = _model_budget(config, groups.values())
    devices = {r.group.device_view.device for r in reads}
    if len(devices) != 1:
        raise ValueError(f"chunkflow: one graph reads weights offloaded for several devices {sorted(map(str, devices))}")
    device = devices.pop()
    profile = resolve_profile(config.profile, device)
    costs = estimate_costs(gm, example_inputs, profile, [r.input_index for r in reads])
    sizes = [x for x in example_inputs if isinstance(x, torch.SymInt)]
    if sizes and config.memory_budget is not None:
        log.warning("chunkflow: this graph has dynamic sizes (%s): memory_budget counts its activations at this "
                    "call's sizes; a call with larger ones uses more device memory than planned (compile with "
                    "dynamic=False to plan each size on its own)", ", ".join(f"{x}={x.node.hint}" for x in sizes[:4]))
    free = free_bytes(device, config)
    policy = resolve(config, profile, budget=False).collective_policy
    if costs.collectives:  # a sequence-parallel graph: every rank must make the same plan
        link = topology.detect(device)
        costed = profile
        if config.profile is None:   # a profile the user gave keeps its link
            profile = link.adjust(profile)
        policy = resolve(config, profile, link=link, budget=False).collective_policy
        log.info("chunkflow: collectives over %s (%s): policy %s, link %.0f GB/s%s", link.kind, link.reason, policy,
                 profile.link_gbs, ", shared with the weight copies" if profile.link_shares_h2d else "")
        profile, free, policy = _agree_across_ranks(profile, free, policy)
        if profile != costed:
            costs = estimate_costs(gm, example_inputs, profile, [r.input_index for r in reads])
    plan, prediction, evicted = plan_graph(reads, config, costs, profile, device, free_bytes=free,
                                                  collective_policy=policy)
    evict(evicted)   # before allocating: the room is theirs until now
    state = _Compiled(gm, example_inputs, reads, config, patches, device, profile, policy)
    state.build(plan, prediction, costs, torch._guards.detect_fake_mode(example_inputs))
    if not config.calibrate:
        state.example_inputs = None

    def run(*args):
        with exclusive(device):
            graph, inputs = state.route(args)
            if graph.calibrating and graph.calls == 1:   # the timed call: its waits mark from here to its end
                graph.marks = timing.start([*graph.rt.slots, *graph.rt.seconds])
            if graph.marks is not None:
                timing.mark(graph.marks, "start", -1, device)
            out = graph.compiled(*args, *inputs)
            if graph.marks is not None:
                timing.mark(graph.marks, "end", -1, device)
            if graph.calibrating:
                graph.after_call()
            return out

    run.chunkflow_info = GraphInfo(state)  # type: ignore[attr-defined]   # reachable only through the graph
    _compiled.append(weakref.ref(run))
    return run


class _Compiled:
    """One chunkflow graph: its plan, device memory and compiled code; rebuilt once if calibration changes the
    plan (``options={"calibrate": True}``)."""

    def __init__(self, gm, example_inputs, reads, config, patches, device, profile, policy):
        self.rt = self.compiled = self.plan = None
        self.is_lean = False                # the variant with nothing resident (`lean` of another graph)
        self.gm, self.reads, self.config, self.patches, self.policy = gm, reads, config, patches, policy
        self.device, self.profile = device, profile
        # Calibration recompiles after a timed call: keeps what compile_fx needs until then.
        self.example_inputs = list(example_inputs)
        self.calibrating = config.calibrate
        self.calls = 0
        self.compiles = 0                   # Inductor runs for this graph (the first, re-plans, calibration)
        self.compiles_saved = 0             # re-plans that kept the compiled code (same placement)
        self.served = [0, 0]                # calls routed here, and the bytes their plans stream (plan at the call)
        self.marks: list | None = None      # timing marks while the calibration call runs
        self.calibration: dict | None = None
        self.names = source_names(gm)
        self.variants: list[_Compiled] = []  # the same graph compiled for other weight layouts
        self.lean: _Compiled | None = None   # ... and with nothing resident, for blocks that do not fit the budget
        self.prev = None                    # the binder's entry of the previous call (its ``next``: the call order)

    def route(self, args) -> tuple["_Compiled", list]:
        """This graph, or the variant compiled for weights laid out differently, and its inputs for ``args``."""
        for graph in (self, *self.variants):
            if graph.rt is None or graph.rt.stale:   # its resident chunks went to a graph planned later under the
                #                                      same MemoryBudget (or planning it again failed on a call)
                graph.replan(args)
            try:
                inputs = graph.bind(args)
            except LayoutMismatch as e:
                log.debug("%s", e)
                continue
            except NoRoom as e:
                graph = self.lean or self.variant(args, lean=True)
                log.info("chunkflow: keeping the resident chunks of %s too would exceed the memory budget of this "
                         "graph (it serves several blocks); streaming them all", e)
                inputs = graph.bind(args)
            graph.count()
            return graph, inputs
        graph = self.variant(args)
        graph.count()
        return graph, graph.bind(args)

    def family(self) -> tuple["_Compiled", ...]:
        """This graph, its layout variants and its lean variant."""
        return (self, *self.variants, *([self.lean] if self.lean else []))

    def count(self) -> None:
        shared.touch(self.rt)
        self.served[0] += 1
        self.served[1] += self.streamed_per_call

    def variant(self, args, lean: bool = False) -> "_Compiled":
        """Plan and compile the same Dynamo graph for the layout of ``args``' weights (Dynamo gave this graph weights
        whose offsets in their groups differ from the traced ones: a plan belongs to a layout); ``lean``: with
        nothing resident, for blocks whose resident chunks do not fit the budget."""
        config = self.config
        if lean and shared.shared(config) is not None:
            # planned within the budget, its arena counted there (planned outside it, its arena grew the shared one
            # past the budget: 12.04 GiB under "12GiB" for a regional Flux); the chunk size and depth of the plan, so
            # its arena is the one `lean_arena` kept room for
            config = dataclasses.replace(config, max_resident_fraction=0.0, chunk_size=self.plan.chunk_size,
                                         prefetch_depth=self.plan.prefetch_depth)
        elif lean:
            config = dataclasses.replace(config, memory_budget=None, resident_fraction=0.0)
        reads = find_weight_reads(self.gm, args)
        costs = estimate_costs(self.gm, args, self.profile, [r.input_index for r in reads])
        plan, prediction, evicted = plan_graph(reads, config, costs, self.profile, self.device,
                                                      free_bytes=free_bytes(self.device, config),
                                                      collective_policy=self.policy)
        evict(evicted)
        graph = _Compiled(self.gm, args, reads, config, self.patches, self.device, self.profile, self.policy)
        graph.calibrating, graph.is_lean = False, lean
        graph.build(plan, prediction, costs, None)
        graph.example_inputs = None
        if lean:
            self.lean = graph
        else:
            self.variants.append(graph)
        log.info("chunkflow: compiled the graph again for weights laid out differently (variant %d)",
                 len(self.variants))
        return graph

    def bind(self, args) -> list:
        """The extra inputs for this call's weights (`runtime.binding`), with the wrap-around copies aimed at the
        weights the next call is expected to read (learnt from the call order: the same weights for a whole model,
        the next block for a graph that serves several). Runs on every block call of a regional compile: in steady
        state it is the binder's fast path and the inputs cached on its entry, no hashing of bindings."""
        entry = self.binder.bind(args)
        prev = self.prev
        if prev is not None and prev.next is not entry:
            prev.next = entry
        self.prev = entry
        rt = self.rt
        if rt.seconds:   # double buffering: the regions swap roles every call
            rt.flip ^= 1
        flip, following = rt.flip, entry.next
        cache = rt.by_entry[flip]
        cached = cache.get(entry)
        # a changed weight makes a new entry (`Binder.bind`), so no generation check here
        if cached is not None and cached[0] is following:
            return cached[1]
        inputs = rt.inputs_for(entry.binding, None if following is None else following.binding, flip)
        if len(cache) > 8192:   # entries of weights changed since (each change makes new ones): keep it bounded
            cache.clear()
        cache[entry] = (following, inputs)
        return inputs

    def build(self, plan, prediction, costs, fake_mode) -> bool:
        """Allocate ``plan``'s device memory and compile its code; a plan that compiles to the code this graph
        already has (re-planned after a take-back into the same placement) keeps that code: no Inductor run.
        Returns whether it kept it."""
        config, reads, device = self.config, self.reads, self.device
        reuse = self.compiled if self.compiled is not None and plan.code_key() == self.plan.code_key() else None
        self.plan, self.prediction, self.costs = plan, prediction, costs
        self.streamed_per_call = plan.streamed_bytes   # (a sum over the groups: not on every call)
        if self.rt is not None:  # free the previous graph's arena and residents before allocating the next ones
            self.rt.close()
        self.compiled = self.rt = None
        rt = GraphRuntime(plan, {r.group.key: r.group for r in reads}, device, config.shared_arena)
        if config.memory_budget is not None and not self.is_lean:   # room its lean variant will need
            rt.lean_arena = lean_arena(reads, plan, config)
        self.binder, self.prev = Binder(plan, self.names), None
        if reuse is not None:
            self.compiled, self.rt = reuse, rt
            self.compiles_saved += 1
        else:
            try:
                self._compile(rt, plan, prediction, costs, fake_mode)
            except BaseException:
                rt.close()
                raise
        shared.register(rt, config, reads, costs.peak_activation_bytes)
        return reuse is not None

    def _compile(self, rt, plan, prediction, costs, fake_mode) -> None:
        from torch._inductor.compile_fx import compile_fx

        config, reads, example_inputs = self.config, self.reads, self.example_inputs
        layout = InputLayout.after(len(example_inputs), plan)
        names = layout.names()
        patches = dict(self.patches)
        dump_dir = new_dump_dir(config.dump) if config.dump else None
        if dump_dir:
            write_plan(dump_dir, plan)
            write_prediction(dump_dir, prediction, prediction.spans(block_spans(plan, costs)),
                             title=f"chunkflow {dump_dir}")
            patches["fx_graph_cache"] = False  # the pass writes the scheduled graph, so it must run
        patches["post_grad_custom_post_pass"] = ChunkflowPass(plan, layout, config, dump_dir, prediction)
        extra = rt.inputs
        fakes = [fake_mode.from_tensor(t, static_shapes=True) for t in extra] if fake_mode else extra
        self.compiled = compile_fx(_with_extra_inputs(self.gm, names), [*example_inputs, *fakes],
                                   config_patches=patches)
        self.compiles += 1
        self.rt, self.layout, self.dump_dir = rt, layout, dump_dir
        log.info("chunkflow: compiled a graph with %d offloaded weights in %d groups, %d chunks; arena %s, resident "
                 "%s, streams %s per call; predicted on %s: %.2f ms per call, %d of %d prefetches hidden, peak %s%s",
                 len(reads), len(plan.groups), len(plan.chunks), format_bytes(plan.total_arena_bytes),
                 format_bytes(plan.total_resident_bytes), format_bytes(plan.streamed_bytes), prediction.profile,
                 prediction.step_ms, prediction.hidden, len(prediction.groups), format_bytes(prediction.peak_bytes),
                 f"; dump in {dump_dir}" if dump_dir else "")

    def replan(self, args) -> None:
        """Plan again within what the shared budget's other graphs leave now, and recompile (the call's inputs stand
        in for the example inputs, as after calibration)."""
        plan, prediction, _ = plan_graph(self.reads, self.config, self.costs, self.profile, self.device,
                                                free_bytes=free_bytes(self.device, self.config),
                                                collective_policy=self.policy, replanning=self.rt)
        before = self.plan.total_resident_bytes
        kept, self.example_inputs = self.example_inputs, list(args)
        try:
            same = self.build(plan, prediction, self.costs, None)
        finally:
            self.example_inputs = kept
        log.info("chunkflow: planned a graph again after its resident chunks were taken back: resident %s -> %s; %s",
                 format_bytes(before), format_bytes(plan.total_resident_bytes),
                 "same placement, the compiled code kept" if same else "recompiled")

    def after_call(self) -> None:
        """Calibration: the first call warms up; the second is timed per block; then the plan is made again from
        the measured compute, and the graph recompiled if the plan changed."""
        from .calibrate import calibrated_costs

        self.calls += 1
        if self.calls == 1:   # warm-up; the next call is timed (`run` starts the marks right before it: started
            return            # here, the calls of other graphs sharing the arena's addresses marked it too)
        marks = timing.stop([*self.rt.slots, *self.rt.seconds], self.marks, self.device)
        self.marks, self.calibrating = None, False
        costs, report = calibrated_costs(self.costs, self.plan, marks)
        if costs.collectives:  # every rank re-plans from rank 0's measurement, so plans stay identical
            costs, report = _from_rank0((costs, report))
        plan, prediction, _ = plan_graph(self.reads, self.config, costs, self.profile, self.device,
                                                free_bytes=free_bytes(self.device, self.config),
                                                collective_policy=self.policy, replanning=self.rt)
        report.update(plan_changed=plan.fingerprint() != self.plan.fingerprint(),
                      predicted_before_ms=self.prediction.step_ms, predicted_after_ms=prediction.step_ms)
        self.calibration = report
        log.info("chunkflow: calibrated from a timed call: compute %.2f ms measured vs %.2f ms estimated; plan %s",
                 report["measured_compute_ms"], report["estimated_compute_ms"],
                 "changed, recompiling" if report["plan_changed"] else "unchanged")
        if report["plan_changed"]:
            self.build(plan, prediction, costs, None)
        else:
            self.prediction, self.costs = prediction, costs
        self.example_inputs = None


_compiled: list[weakref.ref] = []   # weak: a graph Dynamo has dropped frees its arena (with one gc pass: its state
#                                     is reachable only from the compiled function, in the same garbage)


class GraphInfo:
    """One live chunkflow graph, as `compiled_graphs` reports it; always what the graph runs now (after calibration
    or planning again)."""

    __slots__ = ("state",)

    def __init__(self, state: _Compiled):
        self.state = state

    plan = property(lambda self: self.state.plan, doc="the `Plan`")
    config = property(lambda self: self.state.config, doc="the `ChunkFlowConfig`")
    prediction = property(lambda self: self.state.prediction, doc="the cost model's `Prediction` for the plan")
    costs = property(lambda self: self.state.costs, doc="the graph's `GraphCosts`")
    runtime = property(lambda self: self.state.rt, doc="its device memory, a `GraphRuntime`")
    layout = property(lambda self: self.state.layout, doc="positions of the extra graph inputs, an `InputLayout`")
    dump_dir = property(lambda self: self.state.dump_dir, doc="where the dump went (``options={'dump': DIR}``)")
    calibration = property(lambda self: self.state.calibration, doc="the calibration report, once calibrated")
    variants = property(lambda self: self.state.variants, doc="the same graph compiled for other weight layouts")

    @property
    def served(self) -> tuple[int, int]:
        """(calls, bytes streamed) so far, this graph's variants included: bytes as each call's plan streams them
        (`Plan.streamed_bytes`; wrap-around copies counted in the call they are for)."""
        graphs = self.state.family()
        return sum(g.served[0] for g in graphs), sum(g.served[1] for g in graphs)

    @property
    def predicted_ms_served(self) -> float:
        """The cost model's time for the calls served so far: each call priced by the plan of the variant that ran
        it (a graph serving several blocks runs those whose resident chunks do not fit through its lean variant,
        which streams everything: pricing every call by the traced block's plan would miss those copies).
        Calls before a re-plan are priced by the current plan."""
        return sum(g.served[0] * g.prediction.step_ms for g in self.state.family() if g.prediction is not None)

    @property
    def compiles(self) -> int:
        """Inductor runs so far, variants included (the first compile, re-plans that moved a chunk, calibration)."""
        return sum(g.compiles for g in self.state.family())

    @property
    def compiles_saved(self) -> int:
        """Re-plans (after a take-back or a release) that kept the compiled code: same placement of every chunk."""
        return sum(g.compiles_saved for g in self.state.family())

    def reads_from(self, store) -> bool:
        """Whether the graph streams weights offloaded to ``store`` (an `offload.HostStore`)."""
        return any(r.group.store is not None and r.group.store() is store for r in self.state.reads)

    def __getattr__(self, name: str):
        # ``chunkflow_plan`` etc.: the attributes the compiled function carried before issue 18
        if name.startswith("chunkflow_"):
            return getattr(self, name.removeprefix("chunkflow_"))
        raise AttributeError(f"GraphInfo has no attribute {name!r}")

    def __repr__(self) -> str:
        p = self.state.plan
        return (f"GraphInfo({len(p.groups)} groups, {len(p.chunks)} chunks, arena {format_bytes(p.total_arena_bytes)}, "
                f"resident {format_bytes(p.total_resident_bytes)})")


def release_graphs(reading=None) -> int:
    """Give back the device memory (arenas, resident copies) of every live chunkflow graph now; returns how many.
    ``reading``: only of the graphs that read one of these host groups (`offload.Group`s).

    For after ``torch._dynamo.reset()``: Dynamo keeps the guards of graphs split by a graph break alive through
    finalizers on global objects (torch 2.13), and with them the compiled graphs. A released graph that is called
    again is planned again (and compiled again unless the new plan places every chunk as before)."""
    wanted = None if reading is None else {id(g) for g in reading}
    n = 0
    for info in compiled_graphs():
        for g in info.state.family():
            if wanted is not None and not any(id(r.group) in wanted for r in g.reads):
                continue
            if g.rt is not None and not g.rt.closed:
                g.rt.close()
                n += 1
    return n


def compiled_graphs() -> list[GraphInfo]:
    """The live chunkflow graphs of this process, oldest first: ``.plan``, ``.runtime``, ``.layout``,
    ``.prediction``, ``.dump_dir``, ... (`GraphInfo`, the same object for a graph on every call)."""
    _compiled[:] = [r for r in _compiled if r() is not None]
    return [r().chunkflow_info for r in _compiled]
