"""cfcompile: ChunkFlow, a torch.compile backend that streams diffusion-transformer weights from host memory.

    import cfcompile
    cfcompile.offload(model, device="cuda")      # weights -> pinned host memory, seen by torch on the device
    fast = torch.compile(model, backend="chunkflow", options={"resident_fraction": 0.25})
"""

from __future__ import annotations

from typing import Any

import torch

from .config import ChunkFlowConfig, parse_bytes
from .offload import HostStore, offload, restore, store_of

__all__ = ["ChunkFlowConfig", "HostStore", "compile", "offload", "parse_bytes", "restore", "store_of"]
__version__ = "0.1.0"


def compile(model: Any, *, mode: str | None = None, dynamic: bool | None = None, **options: Any):
    """``torch.compile(model, backend="chunkflow", options=options)``, validating the options first."""
    ChunkFlowConfig.from_options(options, mode)
    return torch.compile(model, backend="chunkflow", mode=mode, dynamic=dynamic, options=options or None)
