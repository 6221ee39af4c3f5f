"""The pass manager: the one `post_grad_custom_post_pass` of a chunkflow graph, after vLLM's PostGradPassManager and
torchtitan's ``apply_graph_passes``.

    ChunkflowPass(plan, layout, config, dump_dir, prediction)      installed by the backend, one per compile
      for each pass of `rewrite.PASSES`, unless ``disable_passes`` names it (or a pass it needs):
          gm = pass_(gm, ctx)                   # (gm, RewriteContext) -> gm
          log what it changed (ops added / removed, by target) and how long it took
          with ``dump``: passes/NN_<name>.txt, the graph after each pass that changed it (00_input.txt: before)
      schedule -> dump (scheduled_graph.py, schedule.txt)
      uuid(): plan, config (disable_passes included), input layout and the package's sources, for the FX graph cache

Disabling ``insert_ops`` leaves the graph reading the weights where they are (host memory over UVA): slow, exact.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
import time
import types
from pathlib import Path

import torch.fx as fx
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

from ..config import ChunkFlowConfig
from ..costmodel.model import Prediction
from ..plan.inputs import InputLayout
from ..plan.ir import Plan
from .rewrite import PASSES, REQUIRES, RewriteContext

log = logging.getLogger(__name__)

_SOURCES = tuple(str(p) for p in sorted(Path(__file__).parent.parent.rglob("*.py")))


def pass_name(fn) -> str:
    return fn.__name__.removesuffix("_pass")


NAMES = tuple(pass_name(p) for p in PASSES)


def check_disabled(names) -> None:
    """Refuse a ``disable_passes`` entry that names no pass."""
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ValueError(f"disable_passes: no chunkflow pass named {', '.join(map(repr, unknown))}; the passes are "
                         f"{', '.join(NAMES)}")


def _ops(graph: fx.Graph) -> collections.Counter:
    return collections.Counter(str(n.target) for n in graph.nodes if n.op == "call_function")


def _changes(before: collections.Counter, after: collections.Counter) -> str:
    diff = [(k, after[k] - before[k]) for k in sorted(set(before) | set(after)) if after[k] != before[k]]
    return ", ".join(f"{d:+d} {k}" for k, d in diff) or "no change"


class ChunkflowPass(CustomGraphPass):
    """`post_grad_custom_post_pass` carrying one plan; its uuid keys the FX graph cache on plan, config and code."""

    def __init__(self, plan: Plan, layout: InputLayout, config: ChunkFlowConfig, dump_dir: str | None = None,
                 prediction: Prediction | None = None):
        check_disabled(config.disable_passes)
        self.plan, self.layout, self.config, self.dump_dir = plan, layout, config, dump_dir
        self.prediction = prediction    # the cost model's, for the schedule table (not part of the uuid)
        self.schedule: list[dict] | None = None
        self.timings: dict[str, float] = {}

    def __call__(self, graph: fx.Graph) -> None:
        ctx = RewriteContext(self.plan, self.layout, self.config.overlap_copies, self.prediction)
        gm = graph.owning_module or types.SimpleNamespace(graph=graph)   # the passes use gm.graph
        skipped = set(self.config.disable_passes)
        folder = os.path.join(self.dump_dir, "passes") if self.dump_dir else None
        if folder:
            os.makedirs(folder, exist_ok=True)
            Path(folder, "00_input.txt").write_text(str(gm.graph))
        for i, p in enumerate(PASSES, 1):
            name = pass_name(p)
            if name in skipped or skipped & set(REQUIRES.get(name, ())):
                skipped.add(name)
                log.info("chunkflow: pass %s disabled%s", name, "" if name in self.config.disable_passes else
                         f" (it needs {', '.join(REQUIRES[name])})")
                continue
            before, t0 = _ops(gm.graph), time.perf_counter()
            gm = p(gm, ctx)
            self.timings[name] = ms = (time.perf_counter() - t0) * 1e3
            after = _ops(gm.graph)
            log.info("chunkflow: pass %s: %s (%.1f ms)", name, _changes(before, after), ms)
            if folder and after != before:
                Path(folder, f"{i:02d}_{name}.txt").write_text(str(gm.graph))
        self.schedule = ctx.schedule
        if self.dump_dir:
            from ..report.dump import write_scheduled

            write_scheduled(self.dump_dir, gm.graph, self.schedule)

    def uuid(self) -> bytes:
        h = hashlib.sha256()
        h.update(self.plan.fingerprint().encode())
        h.update(self.config.fingerprint().encode())
        h.update(repr(dataclasses.astuple(self.layout)).encode())
        h.update(get_hash_for_files(_SOURCES))
        return h.digest()
