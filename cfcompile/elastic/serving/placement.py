"""Memory-aware placement: which models each GPU holds, and what running a model on a group adds to a task.

Each GPU has a memory size. A model whose weights plus working memory fit is made *resident*: the first task on
a GPU without it loads it (``load_ms``, evicting least-recently-used models until the residents fit), later tasks
pay nothing. A model that cannot fit on a GPU even alone is *streamed* from host memory (chunkflow): nothing is
loaded, and the cost table prices the streamed step (``ModelCosts.streamed_step_ms``: a planned table by the bytes
that do not fit the GPU's memory over H2D, a synthetic one by a slowdown factor). Under SP every GPU of a group
holds the whole model, so a group streams if one member does, at the memory of its smallest GPU, and waits for
its slowest load. Policies read the same object through the simulator's view (``resident``, ``fits``, ``task_s``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .costs import CostTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prep:
    """What placing a model on a group costs before its compute starts."""

    load_ms: float
    """Longest model load among the group's GPUs (0 when all hold it or it streams)."""
    loads: tuple[int, ...]
    """GPUs that load the model."""
    streamed: bool
    """Some GPU of the group cannot hold the model: it runs streamed."""


class Memory:
    """Resident models per GPU (least recently used first) and the load / stream decision for a group."""

    def __init__(self, mem_gb: Sequence[float], costs: CostTable, load_gbps: float,
                 preload: Mapping[int, Iterable[str]] | None = None):
        self.mem_gb = tuple(float(m) for m in mem_gb)
        self.costs = costs
        self.load_gbps = float(load_gbps)
        self._resident: list[list[str]] = [[] for _ in self.mem_gb]
        for gpu, models in sorted((preload or {}).items()):
            if not 0 <= gpu < len(self.mem_gb):
                raise ValueError(f"preload: GPU {gpu} is not in the pool of {len(self.mem_gb)} GPUs")
            for name in models:
                if not self.fits(name, gpu, with_residents=True):
                    logger.info("preload: %s does not fit next to %s on GPU %d, skipped", name,
                                self._resident[gpu], gpu)
                    continue
                self._resident[gpu].append(name)

    def resident(self, gpu: int) -> tuple[str, ...]:
        """Models held by ``gpu``, least recently used first."""
        return tuple(self._resident[gpu])

    def _need_gb(self, names: Iterable[str]) -> float:
        ms = [self.costs.model(n) for n in names]
        return sum(m.weight_gb for m in ms) + max((m.activation_gb for m in ms), default=0.0)

    def fits(self, model: str, gpu: int, with_residents: bool = False) -> bool:
        """Whether ``model`` can be resident on ``gpu`` (alone, or next to what it holds now)."""
        names = (self._resident[gpu] if with_residents else []) + [model]
        return self._need_gb(names) <= self.mem_gb[gpu]

    def fits_anywhere(self, model: str) -> bool:
        return any(self.fits(model, g) for g in range(len(self.mem_gb)))

    def group_gb(self, group: Sequence[int]) -> float:
        """Memory of the group's smallest GPU: what a streamed group keeps resident per GPU (weights replicate)."""
        return min(self.mem_gb[g] for g in group)

    def load_ms(self, model: str) -> float:
        m = self.costs.model(model)
        return m.load_ms if m.load_ms is not None else m.weight_gb / self.load_gbps * 1e3

    def plan(self, model: str, group: Sequence[int]) -> Prep:
        """What running ``model`` on ``group`` would add, without changing anything."""
        streamed = any(not self.fits(model, g) for g in group)
        if streamed:
            return Prep(0.0, (), True)
        loads = tuple(g for g in group if model not in self._resident[g])
        return Prep(self.load_ms(model) if loads else 0.0, loads, False)

    def apply(self, model: str, group: Sequence[int]) -> Prep:
        """:meth:`plan`, then load (evicting the least recently used) and mark ``model`` most recently used."""
        prep = self.plan(model, group)
        if prep.streamed:
            return prep
        for g in group:
            res = self._resident[g]
            if model in res:
                res.remove(model)
            else:
                while res and self._need_gb(res + [model]) > self.mem_gb[g]:
                    logger.debug("GPU %d evicts %s for %s", g, res[0], model)
                    res.pop(0)
            res.append(model)
        return prep


def parse_gpu_memory(spec: str | float, gpus: int | None = None) -> tuple[float, ...]:
    """Per-GPU memory (GB) from ``"80x4,24x4"`` (4 GPUs of 80 GB, then 4 of 24) or one number for ``gpus`` GPUs.

    A list must name ``gpus`` GPUs when ``gpus`` is given; ValueError says what was wrong and the form expected."""
    form = "a number of GB for every GPU (e.g. 80) or SIZExCOUNT parts (e.g. 80x4,24x4)"
    text = str(spec).strip()
    parts = [p.strip() for p in text.split(",")]
    out: list[float] = []
    try:
        for part in parts:
            size, _, count = part.partition("x")
            n = int(count) if count else None
            if n is not None and n < 1:
                raise ValueError
            if n is None and len(parts) > 1:
                n = 1
            gb = float(size)
            if not gb > 0:
                raise ValueError
            out.extend([gb] * (n if n is not None else (gpus or 0)))
    except ValueError:
        raise ValueError(f"--gpu-memory {text!r}: expected {form}, with positive sizes and counts") from None
    if not out:
        raise ValueError(f"--gpu-memory {text!r} without a pool size: give --gpus, or {form}")
    if gpus is not None and len(out) != gpus:
        raise ValueError(f"--gpu-memory {text!r} describes {len(out)} GPUs but the pool has {gpus}; make the counts "
                         f"add up to {gpus} or leave --gpus out")
    return tuple(out)


def default_preload(gpus: int, models: Sequence[str]) -> dict[int, list[str]]:
    """GPU g starts with the models in order from ``models[g % n]``, as many as fit (Memory skips the rest)."""
    n = len(models)
    return {g: [models[(g + i) % n] for i in range(n)] for g in range(gpus)} if n else {}


__all__ = ["Memory", "Prep", "default_preload", "parse_gpu_memory"]
