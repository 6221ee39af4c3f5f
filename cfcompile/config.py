"""One frozen, validated, hashable configuration for the chunkflow backend.

This is the only module that reads user options and environment variables. Everything downstream takes a
`ChunkFlowConfig`; its `fingerprint()` goes into the Inductor pass `uuid()` so the FX graph cache keys on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any, Mapping

#: Environment variable that turns on dumps for every compiled graph (same as ``options={"dump": DIR}``).
DUMP_ENV = "CFCOMPILE_DUMP"

#: Chunk size when ``chunk_size="auto"`` and there is no memory budget to tune for (`plan.resolve`).
DEFAULT_CHUNK_SIZE = 16 * 2**20

#: Offsets of weights inside host groups, arenas and resident buffers are multiples of this (bytes).
ALIGN = 256

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: Any, *, key: str = "value") -> int:
    """Parse ``16777216``, ``"16MiB"``, ``"1.5 GiB"`` or ``"512MB"`` into a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a number of bytes or a string like '16MiB', got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(
                f"{key}: cannot parse {value!r} as a size; use bytes or a number with one of the units "
                f"B, KB, MB, GB, KiB, MiB, GiB (e.g. '16MiB')")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    else:
        raise ValueError(f"{key}: expected a number of bytes or a string like '16MiB', got {type(value).__name__}")
    if n <= 0:
        raise ValueError(f"{key}: must be positive, got {value!r}")
    return n


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


class MemoryBudget:
    """One device-memory budget for several compiled graphs or models on one device (``memory_budget=`` of each)::

        budget = cfcompile.MemoryBudget("24GiB")
        dit = torch.compile(transformer, backend="chunkflow", options={"memory_budget": budget})
        enc = torch.compile(text_encoder, backend="chunkflow", options={"memory_budget": budget})

    Counted as the device holds it: the resident chunks of every graph add up (each model's once), the streaming
    arena is the largest graph's (one, shared), the activations the largest graph's (one runs at a time). Each new
    graph is planned with what the others leave; if it does not fit even with nothing resident, it takes back the
    resident chunks of the graphs called least recently, which are planned again (and recompiled) on their next
    call within what is left. ``"auto"``: the free device memory when the first graph is planned, then fixed.
    `usage()` reports what the budget's graphs hold."""

    def __init__(self, size: int | str):
        if isinstance(size, MemoryBudget):
            raise ValueError("MemoryBudget: pass a size (bytes, '24GiB' or 'auto'), not another MemoryBudget; "
                             "share one MemoryBudget object between the compiles instead")
        self.bytes: int | None = None if size == "auto" else parse_bytes(size, key="MemoryBudget")
        self.implicit = False   # made by the backend for a plain memory_budget: the model's graphs share it

    def usage(self) -> dict[str, int]:
        """What its graphs hold as planned: ``resident_bytes`` (all add up), ``arena_bytes`` (the largest per
        dtype), ``activation_bytes`` (the largest), ``peak_bytes`` (their sum) and ``graphs``."""
        return _usage(self)

    def __repr__(self) -> str:
        size = "auto" if self.bytes is None else format_bytes(self.bytes)
        return f"memory_budget='{size}' (one model's graphs)" if self.implicit else f"MemoryBudget('{size}')"


def _no_graphs(budget: MemoryBudget) -> dict[str, int]:
    return dict(resident_bytes=0, arena_bytes=0, activation_bytes=0, peak_bytes=0, graphs=0)


_usage = _no_graphs


def count_budgets_with(usage) -> None:
    """``usage(budget) -> dict``: what `MemoryBudget.usage` reports. The runtime, which keeps the graphs planned
    under each budget (`runtime.arena`), installs it when imported: a budget is a plain handle, and this layer
    imports nothing above it."""
    global _usage
    _usage = usage


# Inductor options the backend owns; a user patch of these would break the pass or be ignored.
_RESERVED_INDUCTOR_KEYS = {"post_grad_custom_post_pass", "post_grad_custom_pre_pass"}
_MODES = ("default", "max-autotune-no-cudagraphs")
# Modes that turn on CUDA graphs (`torch._inductor.list_mode_options`: "triton.cudagraphs": True). A CUDA graph would
# freeze the chunkflow ops' per-call host decisions (which wrap-around copies a call still has to make) and capture
# copies on a side stream that the graph does not own; so they are refused rather than silently half-working.
_CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
CUDAGRAPHS_HINT = ("CUDA graphs are not supported with weight streaming: the copies run on a side stream with events "
                   "and each call decides on the host which copies it still needs, which a captured graph would "
                   "replay unchanged. Use mode='max-autotune-no-cudagraphs' (the same autotuning without CUDA "
                   "graphs) or mode='default'.")


@dataclasses.dataclass(frozen=True)
class ChunkFlowConfig:
    """Options of ``torch.compile(model, backend="chunkflow", options={...})``."""

    chunk_size: int | str = "auto"
    """Bytes per chunk (an int or a string like ``"16MiB"``; a multiple of 256), or ``"auto"``: 16 MiB, or with a
    ``memory_budget`` the size the cost model picks. Copies are issued in chunks and residency is decided per
    chunk. Smaller chunks give finer residency and shorter copies, more ops per step."""

    resident_fraction: float | None = None
    """Share of chunks (0..1) copied to the device once and kept there; the rest stream every call. Which chunks
    is the cost model's choice (it spreads the streamed bytes over the step's compute). Default 0 without a
    ``memory_budget``; not allowed together with one."""

    memory_budget: int | str | MemoryBudget | None = None
    """Device memory this graph may use at its peak (resident weights + arena + activations): bytes, a string like
    ``"12GiB"``, or ``"auto"`` (what is free on the device when the graph is compiled). The cost model picks chunk
    size, resident chunks and issue points that minimise the predicted step time within it. A `MemoryBudget`
    object instead is one budget for every graph (of any model) compiled with it."""

    max_resident_fraction: float | None = None
    """With a ``memory_budget``: at most this share of the graph's chunks (0..1) stays resident, however much room
    the budget has; the cost model still chooses which. 0 streams everything (the arena and activations still
    count). For graphs that run once per request next to one that runs every step: under one `MemoryBudget` the
    graphs are planned in call order, so a text encoder planned first would otherwise keep resident what the
    denoiser, called 28 to 50 times per request, needs more (`cfcompile.apply` sets 0 for text encoders and VAEs)."""

    prefetch_depth: int | str = "auto"
    """How many streamed blocks ahead a prefetch is issued: an int for all blocks (1 = double buffering, 0 = no
    overlap), or ``"auto"``: per block, as late as still hides its copy according to the cost model (at most
    3 ahead), 1 where the model is not available."""

    profile: str | None = None
    """Device profile for the cost model: a built-in name (H100, H200, A100, L40S, RTX4090, cpu), a path to a JSON
    file of `DeviceProfile` fields, or None: the cached probe of this GPU (probed on first use), the built-in
    profile on the CPU."""

    collective_policy: str = "auto"
    """Chunk copies around the graph's collectives (all-to-all, all-gather, reduce-scatter, all-reduce of sequence
    parallelism): ``"yield"``: no copy is issued inside a collective's window, copies that would run into one wait
    for it to finish (one chunk in flight at most); ``"overlap"``: copies run under collectives (when they do not
    share a path, e.g. NVLink); ``"auto"``: yield where collectives share the PCIe path with host copies (no NVLink,
    or ``NCCL_P2P_DISABLE=1``), else overlap."""

    schedule: str = "chunkflow"
    """``"layerwise"``: the baseline of SGLang's layerwise offloading in the same backend (whole blocks prefetched one
    block ahead, nothing resident, no regard for collectives), for comparisons in one run."""

    calibrate: bool = False
    """Time the second call of the compiled graph per block (CUDA events; wall clock on the CPU), scale the cost
    model's estimates to what was measured, plan again, and recompile once if the plan changes."""

    shared_arena: bool = True
    """Graphs on one device share one streaming arena (per dtype), sized for the largest: graphs of one model run
    one after another. False gives this graph an arena of its own (graphs that run concurrently on several
    streams)."""

    wrap_around: bool = True
    """Prefetch the first streamed blocks of the next call during the tail of this one (a DiT runs the same graph
    every denoising step); the first call copies them at its start. Weights must not change between calls."""

    overlap_copies: bool = True
    """Run copies on a separate copy stream so they overlap compute (CUDA). False puts them on the compute stream,
    in order: no overlap, for debugging."""

    dump: str | None = None
    """Directory to write, per compiled graph, the scheduled graph, a schedule table and ``plan.json``.
    Also set by the environment variable ``CFCOMPILE_DUMP``. Dumping bypasses the FX graph cache."""

    disable_passes: tuple[str, ...] = ()
    """Names of chunkflow passes to skip (``compiler.pass_manager.NAMES``: find_reads, place_prefetches, insert_ops,
    schedule_table), for debugging; a pass that needs a skipped one is skipped too. Without ``insert_ops`` the graph
    reads the weights in host memory directly: slow, exact."""

    inductor: tuple[tuple[str, Any], ...] = ()
    """Inductor config patches (a dict in ``options``), applied to this compile only."""

    mode: str = "default"
    """``torch.compile(mode=...)`` or ``options={"mode": ...}``: default or max-autotune-no-cudagraphs.
    reduce-overhead and max-autotune (both use CUDA graphs) are refused."""

    def __post_init__(self) -> None:
        if self.chunk_size != "auto":
            object.__setattr__(self, "chunk_size", parse_bytes(self.chunk_size, key="chunk_size"))
            if self.chunk_size % ALIGN:
                raise ValueError(f"chunk_size: must be a multiple of {ALIGN} bytes or 'auto', got {self.chunk_size}; "
                                 f"try {max(ALIGN, self.chunk_size // ALIGN * ALIGN)}")
        rf = self.resident_fraction
        if rf is not None:
            if isinstance(rf, bool) or not isinstance(rf, (int, float)) or not 0.0 <= float(rf) <= 1.0:
                raise ValueError(f"resident_fraction: expected a number in [0, 1], got {rf!r}")
            object.__setattr__(self, "resident_fraction", float(rf))
        mb = self.memory_budget
        if mb is not None and mb != "auto" and not isinstance(mb, MemoryBudget):
            if not isinstance(mb, (int, float, str)) or isinstance(mb, bool):
                raise ValueError(f"memory_budget: expected a number of bytes, a string like '12GiB', 'auto', or a "
                                 f"cfcompile.MemoryBudget (one budget for several models), got {type(mb).__name__}")
            object.__setattr__(self, "memory_budget", parse_bytes(mb, key="memory_budget"))
        if rf is not None and mb is not None:
            raise ValueError("resident_fraction and memory_budget cannot be used together: with a memory_budget the "
                             "cost model chooses the resident chunks; pass one of them")
        cap = self.max_resident_fraction
        if cap is not None:
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0.0 <= float(cap) <= 1.0:
                raise ValueError(f"max_resident_fraction: expected a number in [0, 1], got {cap!r}")
            if mb is None:
                raise ValueError("max_resident_fraction caps what a memory_budget keeps resident; without a "
                                 "memory_budget pass resident_fraction instead")
            object.__setattr__(self, "max_resident_fraction", float(cap))
        pd = self.prefetch_depth
        if pd != "auto" and (isinstance(pd, bool) or not isinstance(pd, int) or pd < 0):
            raise ValueError(f"prefetch_depth: expected an integer >= 0 or 'auto', got {pd!r}")
        if self.profile is not None and not isinstance(self.profile, (str, os.PathLike)):
            raise ValueError(f"profile: expected a built-in profile name or a JSON file path, got "
                             f"{type(self.profile).__name__}")
        if self.profile is not None:
            object.__setattr__(self, "profile", os.fspath(self.profile))
        if not isinstance(self.overlap_copies, bool):
            raise ValueError(f"overlap_copies: expected True or False, got {self.overlap_copies!r}")
        if self.collective_policy not in ("auto", "yield", "overlap"):
            raise ValueError(f"collective_policy: expected 'auto', 'yield' or 'overlap', got {self.collective_policy!r}")
        if self.schedule not in ("chunkflow", "layerwise"):
            raise ValueError(f"schedule: expected 'chunkflow' or 'layerwise', got {self.schedule!r}")
        if self.schedule == "layerwise" and (rf is not None or mb is not None or self.chunk_size != "auto"):
            raise ValueError("schedule='layerwise' copies whole blocks with nothing resident: it takes no "
                             "resident_fraction, memory_budget or chunk_size")
        if not isinstance(self.calibrate, bool):
            raise ValueError(f"calibrate: expected True or False, got {self.calibrate!r}")
        if not isinstance(self.shared_arena, bool):
            raise ValueError(f"shared_arena: expected True or False, got {self.shared_arena!r}")
        if not isinstance(self.wrap_around, bool):
            raise ValueError(f"wrap_around: expected True or False, got {self.wrap_around!r}")
        if self.dump is not None and not isinstance(self.dump, (str, os.PathLike)):
            raise ValueError(f"dump: expected a directory path, got {type(self.dump).__name__}")
        if self.dump is not None:
            object.__setattr__(self, "dump", os.fspath(self.dump))
        if self.mode in _CUDAGRAPH_MODES:
            raise ValueError(f"mode: {self.mode!r} turns on CUDA graphs. {CUDAGRAPHS_HINT}")
        if not isinstance(self.mode, str) or self.mode not in _MODES:
            raise ValueError(f"mode: expected one of {', '.join(_MODES)}, got {self.mode!r}")
        object.__setattr__(self, "inductor", _validate_inductor(self.inductor))
        dp = self.disable_passes
        if isinstance(dp, str) or not isinstance(dp, (tuple, list)) or not all(isinstance(n, str) for n in dp):
            raise ValueError(f"disable_passes: expected a list of pass names, got {dp!r}")
        object.__setattr__(self, "disable_passes", tuple(dp))

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, mode: str | None = None) -> "ChunkFlowConfig":
        """Build from ``torch.compile`` options; unknown keys raise a ValueError naming the allowed ones.

        ``mode`` is what ``torch.compile(mode=...)`` hands a custom backend (as a keyword, only when it is not
        "default"). torch.compile refuses ``mode`` and ``options`` together, so ``options`` may carry it as well."""
        if options is not None and not isinstance(options, Mapping):
            raise ValueError(f"options: expected a dict of chunkflow options, got {type(options).__name__}")
        options = dict(options or {})
        if not all(isinstance(k, str) for k in options):
            raise ValueError(f"options: keys must be strings, got {list(options)}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"unknown chunkflow option(s) {unknown}; allowed: {', '.join(allowed)}")
        if "dump" not in options and os.environ.get(DUMP_ENV):
            options["dump"] = os.environ[DUMP_ENV]
        if "inductor" in options:
            inductor = options["inductor"]
            if not isinstance(inductor, Mapping):
                raise ValueError(f"inductor: expected a dict of Inductor config patches, got {type(inductor).__name__}")
            if not all(isinstance(k, str) for k in inductor):
                raise ValueError(f"inductor: keys must be Inductor config names (strings), got {list(inductor)}")
            options["inductor"] = tuple(sorted(inductor.items()))
        if mode is not None and "mode" in options and options["mode"] != mode:
            raise ValueError(f"mode: given twice, {mode!r} to torch.compile and {options['mode']!r} in options; "
                             f"pass one")
        options.setdefault("mode", mode or "default")
        return cls(**options)

    def inductor_patches(self) -> dict[str, Any]:
        patches: dict[str, Any] = {}
        if self.mode != "default":
            from torch._inductor import list_mode_options
            patches.update(list_mode_options(self.mode))
        patches.update(dict(self.inductor))
        return patches

    def fingerprint(self) -> str:
        """Stable hash of everything that changes the generated code (``dump`` does not)."""
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "dump"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=repr).encode()).hexdigest()


def _validate_inductor(items: Any) -> tuple[tuple[str, Any], ...]:
    if isinstance(items, Mapping):
        items = tuple(sorted(items.items()))
    from torch._inductor import config as inductor_config

    for key, value in items:
        if key in _RESERVED_INDUCTOR_KEYS:
            raise ValueError(f"inductor: {key!r} is set by the chunkflow backend and cannot be patched")
        if not isinstance(key, str) or not hasattr(inductor_config, key.split(".")[0]):
            raise ValueError(f"inductor: {key!r} is not an Inductor config option (see torch._inductor.config)")
        if key == "triton.cudagraphs" and value:
            raise ValueError(f"inductor: {key}={value!r} turns on CUDA graphs. {CUDAGRAPHS_HINT}")
    return tuple(items)
