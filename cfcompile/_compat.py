"""Fixes for what torch.compile trips over in the versions we support (``torch>=2.11``, diffusers 0.42): each is
idempotent and does nothing where it is not needed. Found by running diffusers' own context parallelism under
Dynamo on the GPU machines (torch 2.11) and on the CPU (torch 2.13); each cost a graph break per forward or per
block, and a chunkflow plan ends at a graph break (a block in a graph of its own is fetched with nothing to hide
the copy behind)."""

from __future__ import annotations

import inspect
import logging

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

_CHUNK_CAT = "torch._utils._maybe_view_chunk_cat"


def inline_chunk_cat() -> bool:
    """Let Dynamo trace ``torch._utils._maybe_view_chunk_cat`` (the rule torch 2.13 has; 2.11 lacks it).

    The functional ``all_gather_tensor`` calls it whenever ``gather_dim != 0``, and diffusers' context parallelism
    gathers the model's output that way. torch 2.11's Dynamo skips everything in ``torch._utils`` that has no rule,
    so every Ulysses forward broke into two graphs there, under any backend. Returns whether the rule was added."""
    from torch._dynamo import trace_rules
    from torch._dynamo.variables import UserFunctionVariable

    if not hasattr(torch._utils, "_maybe_view_chunk_cat") or _CHUNK_CAT in trace_rules.manual_torch_name_rule_map:
        return False
    trace_rules.manual_torch_name_rule_map[_CHUNK_CAT] = UserFunctionVariable
    trace_rules.get_torch_obj_rule_map.cache_clear()   # the rule map is built once and cached
    log.debug("cfcompile: Dynamo now inlines %s (torch %s skipped it)", _CHUNK_CAT, torch.__version__)
    return True


class _QuietWhileCompiling:
    """Stands in for the logger of ``diffusers.hooks.context_parallel``; its ``warning_once`` does nothing while
    Dynamo traces, everything else is the logger's."""

    def __init__(self, logger: logging.Logger):
        self._logger = logger
        self._seen: set[str] = set()

    def warning_once(self, msg, *args, **kwargs) -> None:
        if torch.compiler.is_compiling():
            return
        if hasattr(logging.Logger, "warning_once"):   # transformers' (installed with it): keep its behaviour
            self._logger.warning_once(msg, *args, **kwargs)
        elif str(msg) not in self._seen:
            self._seen.add(str(msg))
            self._logger.warning(msg, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._logger, name)


def quiet_context_parallel_warnings() -> bool:
    """Keep ``logger.warning_once(...)`` of diffusers' context-parallel split hook out of compiled graphs.

    The hook warns on every forward of a module whose input has other dimensions than its plan expects: Wan 2.1's
    ``temb`` (3-D, the plan says 4) in each of its 40 blocks. Dynamo cannot trace a ``logging.Logger`` method and
    breaks the graph there, once per block. (Dynamo's ``ignore_logging_functions`` would avoid that, but torch 2.11
    then fails to log its compile metrics: the set is not JSON.) diffusers 0.42 calls ``warning_once`` without
    defining it, a method transformers adds to ``logging.Logger``: without transformers this also makes the eager
    forward work. Eager still warns once. Returns whether the logger was replaced now."""
    import sys

    module = sys.modules.get("diffusers.hooks.context_parallel")
    logger = getattr(module, "logger", None)
    if not isinstance(logger, logging.Logger):   # not loaded (no parallelism enabled), or replaced already
        return False
    module.logger = _QuietWhileCompiling(logger)
    return True


def prime_context_parallel_hooks(model: nn.Module) -> int:
    """Fill in the parameter order diffusers' context-parallel split hooks look up on their first forward.

    A hook that finds its input among the positional arguments calls ``inspect.signature(cls.forward)`` once, on
    the first call; Dynamo cannot trace that (``hasattr(..., "__wrapped__")``), so the first compiled forward
    breaks at every such hook: every block of Wan (called as ``block(hidden_states, ...)``). Computed here the way
    diffusers does, outside any trace. Call after ``model.enable_parallelism(...)``.
    Returns the number of hooks primed."""
    primed = 0
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        for hook in getattr(registry, "hooks", {}).values():
            meta = getattr(hook, "module_forward_metadata", None)
            if meta is None or getattr(meta, "cached_parameter_indices", 0) is not None or meta._cls is None:
                continue
            names = list(inspect.signature(meta._cls.forward).parameters)[1:]   # skip self, as diffusers does
            meta.cached_parameter_indices = {name: i for i, name in enumerate(names)}
            primed += 1
    return primed


def prepare_context_parallel(model: nn.Module) -> int:
    """Everything above for a model after ``model.enable_parallelism(...)``; `cfcompile.offload` calls it. Returns
    the number of split hooks primed."""
    inline_chunk_cat()
    quiet_context_parallel_warnings()
    return prime_context_parallel_hooks(model)


def apply() -> None:
    """The process-wide fixes (Dynamo's rules), at import of the backend."""
    inline_chunk_cat()
