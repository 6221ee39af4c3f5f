"""Every ``"auto"`` of a `ChunkFlowConfig` turned into a value, in one place: `resolve`.

    memory_budget      "auto" / MemoryBudget("auto") -> the free device memory (`free_bytes`), bytes -> bytes
    chunk_size         "auto" -> the candidates the search tries under a budget, else 16 MiB
    resident_fraction  None -> 0 (the search decides residency under a budget)
    prefetch_depth     "auto" -> None: per block, chosen by the cost model
    collective_policy  "auto" -> "yield" where collectives share the PCIe path with host copies (the profile says
                       so, or the detected interconnect does), else "overlap"

The backend calls it with what it knows of the device, `cfcompile.plan_model` with a profile and no device; both
plan from the same values.
"""

from __future__ import annotations

import dataclasses

import torch

from ..config import DEFAULT_CHUNK_SIZE, ChunkFlowConfig, MemoryBudget

#: Chunk sizes tried under a memory budget when ``chunk_size="auto"``.
CHUNK_CANDIDATES = (4 * 2**20, 8 * 2**20, 16 * 2**20, 32 * 2**20, 64 * 2**20)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A config's values for one graph on one device."""

    memory_budget: int | None
    """Bytes the graph may use at its peak (before the planner's headroom), or None: no budget."""
    chunk_sizes: tuple[int, ...]
    """Chunk sizes to try (one unless tuned under a budget)."""
    resident_fraction: float
    """Share of chunks resident without a budget."""
    prefetch_depth: int | None
    """One depth for every block, or None: per block, from the cost model."""
    collective_policy: str
    """"yield" or "overlap"."""


def free_bytes(device: torch.device, config: ChunkFlowConfig) -> int | None:
    """What ``memory_budget="auto"`` may use on ``device``: free device memory plus what torch's allocator holds
    unused; None where the config has no "auto" budget or the device is not a GPU."""
    mb = config.memory_budget
    if device.type != "cuda" or not (mb == "auto" or isinstance(mb, MemoryBudget) and mb.bytes is None):
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(0.95 * (free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)))


def resolve(config: ChunkFlowConfig, profile=None, *, free_bytes: int | None = None, link=None,
            budget: bool = True) -> Resolved:
    """``config``'s values for a graph: ``profile`` (a `DeviceProfile`) and ``link`` (a detected
    `topology.Interconnect`) decide the collective policy, ``free_bytes`` an "auto" budget; ``budget=False``
    leaves the budget unresolved (None), for what does not depend on it."""
    mb = config.memory_budget if budget else None
    if isinstance(mb, MemoryBudget):
        if mb.bytes is None and free_bytes is None:
            raise ValueError("MemoryBudget('auto') needs the free device memory, which is only known on a GPU; "
                             "give it a number of bytes (e.g. MemoryBudget('24GiB')) instead")
        mb = mb.bytes if mb.bytes is not None else free_bytes
    elif mb == "auto":
        if free_bytes is None:
            raise ValueError("memory_budget='auto' needs the free device memory, which is only known on a GPU; "
                             "pass a number of bytes (e.g. '12GiB') instead")
        mb = free_bytes
    if config.chunk_size != "auto":
        sizes = (config.chunk_size,)
    else:
        sizes = CHUNK_CANDIDATES if mb is not None else (DEFAULT_CHUNK_SIZE,)
    policy = config.collective_policy
    if policy == "auto":
        shares = (profile is not None and profile.link_shares_h2d) or (link is not None and link.shares_h2d)
        policy = "yield" if shares else "overlap"
    return Resolved(mb, sizes, config.resident_fraction or 0.0,
                    config.prefetch_depth if isinstance(config.prefetch_depth, int) else None, policy)
