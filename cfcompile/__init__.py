"""cfcompile: ChunkFlow, a torch.compile backend that streams diffusion-transformer weights from host memory.

    import cfcompile
    cfcompile.offload(model, device="cuda")      # weights -> pinned host memory, seen by torch on the device
    fast = torch.compile(model, backend="chunkflow", options={"memory_budget": "12GiB"})
    budget = cfcompile.MemoryBudget("24GiB")     # one budget for several models: memory_budget=budget in each
    cfcompile.plan_model("flux", cfcompile.Workload(height=1024, width=1024), profile="H100")   # no GPU needed
    cfcompile.apply(pipe, device="cuda", memory_budget="12GiB")   # a whole diffusers pipeline; restore(pipe) undoes
    cfcompile.compiled_graphs()                  # one GraphInfo per live chunkflow graph: .plan, .runtime, ...

The package, bottom up (each layer imports only those below it; tests/test_architecture.py checks it): config,
pinned, offload, costmodel/, plan/, runtime/ and report/, compiler/ and elastic/, then presets, planning, this
module and cli. This module owns the public API; it imports config, offload and _compat at import, and planning,
presets and the compiler only when asked for (importing it also registers the ``chunkflow`` backend).
"""

from __future__ import annotations

from typing import Any

import torch

from ._compat import prepare_context_parallel
from .config import ChunkFlowConfig, MemoryBudget, parse_bytes
from .offload import HostStore, offload, store_of
from .pipelines import apply, restore

__all__ = ["ChunkFlowConfig", "HostStore", "MemoryBudget", "Workload", "apply", "compile", "compiled_graphs", "offload",
           "parse_bytes", "plan_model", "prepare_context_parallel", "restore", "store_of"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # planning pulls in diffusers presets, the compiler Inductor: import them only when asked for
    if name in ("plan_model", "Workload"):
        from . import planning, presets

        return planning.plan_model if name == "plan_model" else presets.Workload
    if name == "compiled_graphs":
        from .compiler.backend import compiled_graphs

        return compiled_graphs
    raise AttributeError(f"module 'cfcompile' has no attribute {name!r}")


def _register_backend_without_entry_point() -> None:
    """``backend="chunkflow"`` also where cfcompile runs from a source tree (``PYTHONPATH``), without the
    ``torch_dynamo_backends`` entry point an install declares (registering both would be a duplicate name)."""
    from importlib.metadata import entry_points

    if any(e.name == "chunkflow" and e.value == "cfcompile.compiler.backend:chunkflow"
           for e in entry_points(group="torch_dynamo_backends")):
        return   # an install whose metadata predates the move to compiler/ is registered directly
    from torch._dynamo.backends.registry import _COMPILER_FNS, register_backend

    if "chunkflow" in _COMPILER_FNS:
        return

    def chunkflow(gm, example_inputs, **kwargs):
        from .compiler.backend import chunkflow as backend

        return backend(gm, example_inputs, **kwargs)

    register_backend(chunkflow, name="chunkflow")


_register_backend_without_entry_point()


def compile(model: Any, *, mode: str | None = None, dynamic: bool | None = None, **options: Any):
    """``torch.compile(model, backend="chunkflow", options=options)``, validating the options first.

    torch.compile refuses ``mode`` together with ``options``; the mode travels inside the options instead."""
    ChunkFlowConfig.from_options(options, mode)
    if mode is not None and mode != "default":
        options = {**options, "mode": mode}
    return torch.compile(model, backend="chunkflow", dynamic=dynamic, options=options or None)
