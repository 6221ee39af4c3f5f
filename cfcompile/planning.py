"""Plan a model without a GPU and without its weights: ``cfcompile plan`` and `plan_model`.

    report = cfcompile.plan_model("flux", Workload(height=1024, width=1024), profile="H100", memory_budget="12GiB")
    print(report.table())                 # per block: compute, resident / streamed bytes, copy, hidden?, stall
    report.write("plan-out/")             # plan.json, prediction.json, timeline.json (Perfetto), timeline.png

The model is built on the meta device (no memory), Dynamo traces its forward on meta inputs with a capturing
backend (nothing runs), the weights are laid out as `cfcompile.offload` would pack them (`offload.planned_layout`),
and the same cost model and planner as the backend's choose the plan. What the backend would do on that GPU for
that workload is what this prints; the GPU benchmarks check the predictions against measurements.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.fx as fx
from tabulate import tabulate
from torch import nn

from .config import ChunkFlowConfig, format_bytes
from .costmodel.graph_costs import GraphCosts, estimate_costs
from .costmodel.model import Prediction
from .costmodel.profiles import DeviceProfile, resolve_profile
from .offload import planned_layout
from .plan.analysis import find_weight_reads
from .plan.ir import Plan
from .plan.resolve import resolve
from .plan.search import block_spans, plan_with_model
from .presets import Workload, get_preset

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PlanReport:
    model: str
    workload: Workload | None
    profile: DeviceProfile
    config: ChunkFlowConfig
    plan: Plan
    prediction: Prediction
    costs: GraphCosts
    graphs: int                 # Dynamo graphs the forward compiled to (1 = no graph break)

    def rows(self) -> list[dict]:
        """One row per weight group (block), in execution order."""
        by_key = {g.key: g for g in self.prediction.groups}
        compute = {name: end - start for name, start, end in block_spans(self.plan, self.costs)}
        out = []
        for g in self.plan.groups:
            p = by_key.get(g.key)
            name = g.key.rsplit(":", 1)[0]
            out.append(dict(block=name, compute_ms=compute.get(name, 0.0), resident_bytes=g.resident_bytes,
                            streamed_bytes=g.streamed_bytes, copy_ms=p.copy_ms if p else 0.0,
                            cover_ms=p.cover_ms if p else None, hidden=p.hidden if p else None,
                            stall_ms=p.stall_ms if p else 0.0))
        return out

    def table(self) -> str:
        rows = [(r["block"], f"{r['compute_ms']:.2f}", format_bytes(r["resident_bytes"]),
                 format_bytes(r["streamed_bytes"]), f"{r['copy_ms']:.2f}" if r["streamed_bytes"] else "",
                 "" if r["hidden"] is None else ("yes" if r["hidden"] else "no"),
                 f"{r['stall_ms']:.2f}" if r["streamed_bytes"] else "") for r in self.rows()]
        p, plan = self.prediction, self.plan
        head = tabulate(rows, headers=["block", "compute ms", "resident", "streamed", "copy ms", "hidden?",
                                       "stall ms"], tablefmt="simple")
        summary = tabulate([
            ("model", self.model + (f" ({self.graphs} graphs: graph breaks)" if self.graphs > 1 else "")),
            ("workload", _workload_str(self.workload)),
            ("device profile", f"{self.profile.name} ({self.profile.source}): H2D {self.profile.h2d_gbs} GB/s, "
                               f"{self.profile.matmul_tflops:g} TFLOP/s peak"),
            ("options", _options_str(self.config)),
            ("chunks", f"{len(plan.chunks)} of {format_bytes(plan.chunk_size)}, "
                       f"{sum(c.resident for c in plan.chunks)} resident; prefetch depth <= {plan.prefetch_depth}"),
            ("predicted step", f"{p.step_ms:.1f} ms (compute {p.compute_ms:.1f} ms + stalls {p.stall_ms:.1f} ms); "
                               f"{p.hidden} of {len(p.groups)} prefetches hidden"),
            ("H2D per step", f"{format_bytes(plan.streamed_bytes)} ({p.copy_ms:.1f} ms of copies)"),
            ("predicted peak memory", f"{format_bytes(p.peak_bytes)} = resident {format_bytes(p.resident_bytes)} "
                                      f"+ arena {format_bytes(p.arena_bytes)} + activations "
                                      f"{format_bytes(p.activation_bytes)}"),
            ("weights", format_bytes(plan.host_bytes)),
        ], tablefmt="plain")
        return f"{head}\n\n{summary}"

    def write(self, out_dir: str | Path) -> list[str]:
        """plan.json, prediction.json, blocks.json, timeline.json (Perfetto) and timeline.png (with matplotlib)."""
        from .report.dump import write_prediction

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "plan.json").write_text(json.dumps(self.plan.to_json(), indent=1))
        (out / "blocks.json").write_text(json.dumps(self.rows(), indent=1))
        spans = self.prediction.spans(block_spans(self.plan, self.costs))
        title = f"{self.model}, {_workload_str(self.workload)}, {self.profile.name}"
        return [str(out / "plan.json"), str(out / "blocks.json"),
                *write_prediction(str(out), self.prediction, spans, title)]


def _workload_str(w: Workload | None) -> str:
    if w is None:
        return "given inputs"
    frames = f"x{w.frames} frames" if w.frames > 1 else ""
    return (f"{w.height}x{w.width}{frames}, batch {w.batch}"
            + (f", text {w.text_tokens}" if w.text_tokens else "") + (f", SP {w.sp_degree}" if w.sp_degree > 1 else ""))


def _options_str(c: ChunkFlowConfig) -> str:
    keys = ("chunk_size", "resident_fraction", "memory_budget", "prefetch_depth")
    return ", ".join(f"{k}={getattr(c, k) if k != 'memory_budget' or not isinstance(c.memory_budget, int) else format_bytes(c.memory_budget)}"
                     for k in keys if getattr(c, k) is not None)


class _Captured(Exception):
    pass


def capture_graphs(model: nn.Module, inputs: Mapping[str, Any]) -> list[tuple[fx.GraphModule, list]]:
    """The Dynamo graphs of ``model(**inputs)`` with their example inputs; nothing is executed."""
    graphs: list[tuple[fx.GraphModule, list]] = []

    def backend(gm, example_inputs):
        graphs.append((gm, list(example_inputs)))
        return gm.forward  # meta tensors: running it costs nothing

    torch._dynamo.reset()
    try:
        with torch.no_grad():
            torch.compile(model, backend=backend, fullgraph=False)(**inputs)
    finally:
        torch._dynamo.reset()
    return graphs


def plan_model(model: nn.Module | str, workload: Workload | None = None, inputs: Mapping[str, Any] | None = None,
               *, profile: str | DeviceProfile = "H100", dtype: torch.dtype = torch.bfloat16, tiny: bool = False,
               overrides: Mapping[str, Any] | None = None, **options) -> PlanReport:
    """Plan ``model`` (a preset name, or a module on the meta device with ``inputs``) for ``profile`` under the
    backend ``options`` (chunk_size, resident_fraction, memory_budget, prefetch_depth). ``tiny``: the preset's
    tiny config (a quick look at the tool); ``overrides``: preset config entries to change (e.g.
    ``num_attention_heads=8`` so that a tiny model splits over Ulysses 8)."""
    graphs = None
    if isinstance(model, str):
        preset = get_preset(model)
        name = preset.name + (" (tiny)" if tiny else "")
        workload = workload or Workload()
        module, graphs = _traced_preset(preset, workload, dtype, tiny, overrides or {})
    else:
        if inputs is None:
            raise ValueError("plan_model: pass inputs=dict(...) of meta tensors for a module (or a preset name)")
        module, name = model, type(model).__name__
    sp = workload.sp_degree if workload is not None else 1
    config = ChunkFlowConfig.from_options(options)
    prof = profile if isinstance(profile, DeviceProfile) else resolve_profile(profile, "cpu")
    policy = resolve(config, prof).collective_policy   # raises for memory_budget="auto": no GPU to ask

    if graphs is None:
        graphs = capture_graphs(module, inputs)
    layout = planned_layout(module)
    best = None
    for gm, example_inputs in graphs:
        reads = find_weight_reads(gm, example_inputs, locate=lambda t: layout.get(id(t)))
        if reads and (best is None or len(reads) > len(best[2])):
            best = (gm, example_inputs, reads)
    if best is None:
        raise ValueError(f"plan_model: the traced forward of {name} reads none of its parameters")
    gm, example_inputs, reads = best
    costs = estimate_costs(gm, example_inputs, prof, [r.input_index for r in reads], sp_degree=sp)
    plan, prediction = plan_with_model(reads, config, costs, prof, collective_policy=policy)
    return PlanReport(name, workload, prof, config, plan, prediction, costs, len(graphs))


_TRACES: "OrderedDict[tuple, tuple[nn.Module, list]]" = OrderedDict()
TRACE_CACHE_SIZE = 4
"""Preset traces ``plan_model`` keeps: a full-size trace takes ~35 s on a CPU and is the same for every SP degree,
memory budget and profile, so a sweep over those (serving cost tables) traces each shape once."""


def _traced_preset(preset, workload: Workload, dtype: torch.dtype, tiny: bool,
                   overrides: Mapping[str, Any]) -> tuple[nn.Module, list]:
    """The meta module of ``preset`` and the Dynamo graphs of its forward on ``workload``, cached by shape.

    The SP degree is validated here but not part of the key: the traced graph is the full sequence at any degree
    (``estimate_costs`` divides it). The module is cached with its graphs because the weight layout is found by
    tensor identity against the graphs' example inputs."""
    preset.check(workload, {**(preset.tiny_config if tiny else preset.config), **overrides})
    key = (preset.name, tiny, tuple(sorted(overrides.items())), str(dtype), dataclasses.replace(workload, sp_degree=1))
    hit = _TRACES.get(key)
    if hit is not None:
        _TRACES.move_to_end(key)
        return hit
    t0 = time.perf_counter()
    module = preset.build("meta", dtype, tiny=tiny, **overrides)
    inputs = preset.inputs(module.config, dataclasses.replace(workload, sp_degree=1), "meta", dtype)
    _TRACES[key] = hit = (module, capture_graphs(module, inputs))
    while len(_TRACES) > TRACE_CACHE_SIZE:
        _TRACES.popitem(last=False)
    logger.info("traced %s%s at %s in %.1f s", preset.name, " (tiny)" if tiny else "", _workload_str(workload),
                time.perf_counter() - t0)
    return hit


def clear_trace_cache() -> None:
    """Forget the cached preset traces (``plan_model`` traces again)."""
    _TRACES.clear()
