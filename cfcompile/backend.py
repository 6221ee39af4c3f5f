"""The ``chunkflow`` torch.compile backend: Dynamo graph -> AOTAutograd -> Inductor, with the chunkflow pass.

    torch.compile(model, backend="chunkflow", options={...})
      1. find the graph inputs that are offloaded weights (by data pointer, `passes.analysis`)
      2. plan chunks, residency, issue points and arena offsets (`passes.plan`)
      3. allocate the arena and resident buffers once for this graph, fill the resident ones (`GraphRuntime`)
      4. append arena / resident / host-group buffers as extra graph inputs and call Inductor's `compile_fx` with
         the rewrite installed as `post_grad_custom_post_pass` (`passes.rewrite`)
      5. return a callable that passes the extra inputs on every call

A graph that reads no offloaded weight is compiled by plain Inductor (with the user's Inductor patches).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx

from .runtime.arena import GraphRuntime
from .config import ChunkFlowConfig, format_bytes
from .costmodel.graph_costs import estimate_costs
from .costmodel.profiles import resolve_profile
from .dump import new_dump_dir, write_plan, write_prediction
from .passes.analysis import find_weight_reads
from .passes.tune import block_spans, plan_with_model
from .passes.rewrite import ChunkflowPass, InputLayout

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


def _free_bytes(device: torch.device) -> int | None:
    """What ``memory_budget="auto"`` may use: free device memory plus what torch's allocator holds unused."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(0.95 * (free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)))


def chunkflow(gm: fx.GraphModule, example_inputs: Sequence[Any], *, options: dict | None = None,
              mode: str | None = None) -> Callable:
    """The backend function registered as ``"chunkflow"`` (entry point ``torch_dynamo_backends``)."""
    from torch._inductor.compile_fx import compile_fx

    config = ChunkFlowConfig.from_options(options, mode)
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
    devices = {r.group.device_view.device for r in reads}
    if len(devices) != 1:
        raise ValueError(f"chunkflow: one graph reads weights offloaded for several devices {sorted(map(str, devices))}")
    device = devices.pop()
    profile = resolve_profile(config.profile, device)
    costs = estimate_costs(gm, example_inputs, profile, [r.input_index for r in reads])
    plan, prediction = plan_with_model(reads, config, costs, profile, free_bytes=_free_bytes(device))
    rt = GraphRuntime(plan, {r.group.key: r.group for r in reads}, device)
    layout = InputLayout.after(len(example_inputs), plan)
    names = [f"cf_slot_{j}" for j in range(len(rt.slots))] + [f"cf_host_{j}" for j in range(len(rt.hosts))] + \
        [f"cf_resident_{j}" for j in range(len(rt.residents))]
    dump_dir = new_dump_dir(config.dump) if config.dump else None
    if dump_dir:
        write_plan(dump_dir, plan)
        write_prediction(dump_dir, prediction, prediction.spans(block_spans(plan, costs)),
                         title=f"chunkflow {dump_dir}")
        patches["fx_graph_cache"] = False  # the pass writes the scheduled graph, so it must run
    patches["post_grad_custom_post_pass"] = ChunkflowPass(plan, layout, config, dump_dir, prediction)

    fake_mode = torch._guards.detect_fake_mode(example_inputs)
    extra = rt.inputs
    fakes = [fake_mode.from_tensor(t, static_shapes=True) for t in extra] if fake_mode else extra
    compiled = compile_fx(_with_extra_inputs(gm, names), [*example_inputs, *fakes], config_patches=patches)
    log.info("chunkflow: compiled a graph with %d offloaded weights in %d groups, %d chunks; arena %s, resident %s, "
             "streams %s per call; predicted on %s: %.2f ms per call, %d of %d prefetches hidden, peak %s%s",
             len(reads), len(plan.groups), len(plan.chunks), format_bytes(plan.total_arena_bytes),
             format_bytes(plan.total_resident_bytes), format_bytes(plan.streamed_bytes), prediction.profile,
             prediction.step_ms, prediction.hidden, len(prediction.groups), format_bytes(prediction.peak_bytes),
             f"; dump in {dump_dir}" if dump_dir else "")

    def run(*args):
        return compiled(*args, *extra)

    run.chunkflow_plan = plan  # type: ignore[attr-defined]
    run.chunkflow_prediction = prediction  # type: ignore[attr-defined]
    run.chunkflow_costs = costs  # type: ignore[attr-defined]
    run.chunkflow_runtime = rt  # type: ignore[attr-defined]
    run.chunkflow_dump_dir = dump_dir  # type: ignore[attr-defined]
    run.chunkflow_layout = layout  # type: ignore[attr-defined]
    _compiled.append(weakref.ref(run))
    return run


_compiled: list[weakref.ref] = []  # weak: a graph Dynamo has dropped frees its arena


def compiled_graphs() -> list:
    """The live chunkflow graphs of this process, oldest first: ``.chunkflow_plan``, ``.chunkflow_runtime``,
    ``.chunkflow_layout``, ``.chunkflow_dump_dir``."""
    _compiled[:] = [r for r in _compiled if r() is not None]
    return [r() for r in _compiled]
