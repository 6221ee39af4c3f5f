"""Ulysses sequence parallelism for diffusers transformers over a :class:`LogicalGroup`, regroupable per call.

    model = FluxTransformer2DModel(...)                 # the same weights on every rank
    with cfcompile.elastic.ulysses(model, form_group((2, 0))):
        out = model(**inputs)                           # members pass the full inputs and get the full output

What runs, with the model's own ``_cp_plan`` (the one diffusers' ``enable_parallelism`` uses)::

    model inputs / split_output modules   x -> x.chunk(N, split_dim)[my group rank]        (our split hook)
    attention (every processor)           diffusers' TemplatedUlyssesAttention: heads <-> sequence all-to-alls,
                                          the attention backend in between; its all-to-all goes over the
                                          LogicalGroup (cfcompile_elastic.all_to_all_single), not a process group
    ContextParallelOutput modules         y -> all_gather(y, group, dim=gather_dim)         (our gather hook)

Reused from diffusers: the plan, the argument lookup of its split hook (we subclass it), and its Ulysses
attention (reached by giving each processor a stand-in for ``ParallelConfig`` whose "mesh" returns the
LogicalGroup). diffusers calls a process group in one place on that path, the module function
``attention_dispatch._all_to_all_single(x, group)``; it is wrapped once to send LogicalGroups to our op and
everything else to the original (diffusers' own CP keeps working in the same process).

Changing the group is a host-side assignment (:func:`set_ulysses_group`): no communicator and no weight copy. The
hooks read the group at call time; under ``torch.compile`` the group's ranks are constants of the graph, so a new
group (or degree) is a Dynamo recompile of the same model, guarded like any attribute. A group of one, or
``None``, runs the model unsplit. Attention masks that diffusers would all-gather, ring attention and
``ulysses_anything`` are not supported over a logical group (clear errors).
"""

from __future__ import annotations

import contextlib
import logging

import torch
import torch.distributed as dist

from .collectives import all_gather, all_to_all
from .groups import LogicalGroup

log = logging.getLogger(__name__)

_SPLIT_HOOK = "cfcompile_ulysses_split---{}"
_GATHER_HOOK = "cfcompile_ulysses_gather---{}"


class _UlyssesState:
    """The model's current logical group; stands in for diffusers' ``ParallelConfig`` *and* its
    ``ContextParallelConfig`` and Ulysses "mesh", as far as TemplatedUlyssesAttention reads them."""

    ring_degree = 1
    ulysses_anything = False
    ring_anything = False

    def __init__(self, processors):
        self.group: LogicalGroup | None = None
        self.me = 0                         # this rank's position in the group
        self.processors = processors

    @property
    def context_parallel_config(self) -> "_UlyssesState":
        return self

    @property
    def _ulysses_mesh(self) -> "_UlyssesState":
        return self

    @property
    def ulysses_degree(self) -> int:
        return self.group.size

    def get_group(self) -> LogicalGroup:
        return self.group

    @property
    def active(self) -> bool:
        return self.group is not None and self.group.size > 1

    def set(self, group: LogicalGroup | None) -> None:
        if group is not None:
            if not isinstance(group, LogicalGroup):
                raise TypeError(f"ulysses: expected a LogicalGroup or None, got {type(group).__name__}; build one "
                                "with cfcompile.elastic.form_group(ranks)")
            if not dist.is_initialized():
                raise RuntimeError("ulysses: torch.distributed is not initialised; call dist.init_process_group "
                                   "first (a group of one still needs the world to know this rank)")
            rank = dist.get_rank()
            if rank not in group:
                raise ValueError(f"ulysses: this rank ({rank}) is not in the group {group.ranks}; only members run "
                                 "the model with that group")
            group.check_world(dist.get_world_size())
            self.me = group.rank_in_group(rank)
        self.group = group
        # attention goes through Ulysses only with a partner: a group of one is the plain model
        for p in self.processors:
            p._parallel_config = self if self.active else None


def _check_plan(model) -> dict:
    plan = getattr(model, "_cp_plan", None)
    if not plan:
        raise ValueError(f"ulysses: {type(model).__name__} has no _cp_plan (diffusers' context-parallel plan); "
                         "only diffusers transformers with one can run Ulysses over a logical group")
    if getattr(model, "_parallel_config", None) is not None:
        raise RuntimeError(f"ulysses: diffusers parallelism is already enabled on this {type(model).__name__} "
                           "(enable_parallelism / parallel_config=); use one or the other, on a fresh model")
    return plan


def _attention_processors(model) -> list:
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry
    from diffusers.models.attention_processor import Attention

    procs = []
    for m in model.modules():
        if not isinstance(m, (Attention, AttentionModuleMixin)):
            continue
        p = m.processor
        if p is None or not hasattr(p, "_parallel_config") or not hasattr(p, "_attention_backend"):
            continue
        backend = p._attention_backend
        backend = _AttentionBackendRegistry.get_active_backend()[0] if backend is None else AttentionBackendName(
            backend)
        if not _AttentionBackendRegistry._is_context_parallel_available(backend):
            raise ValueError(f"ulysses: attention processor {type(p).__name__} uses backend {backend.value}, which "
                             "has no context-parallel path; model.set_attention_backend('native') first")
        procs.append(p)
    if not procs:
        raise ValueError(f"ulysses: found no diffusers attention processor in {type(model).__name__}")
    return procs


def _route_diffusers_all_to_all() -> None:
    """Wrap ``attention_dispatch._all_to_all_single`` (once per process) so a LogicalGroup goes to our op."""
    import diffusers.models.attention_dispatch as ad

    if getattr(ad._all_to_all_single, "_cfcompile_elastic", False):
        return
    original = ad._all_to_all_single

    def _all_to_all_single(x: torch.Tensor, group) -> torch.Tensor:
        if isinstance(group, LogicalGroup):
            # diffusers lays out (group size, ...) so that equal dim-0 splits are the per-member chunks
            return all_to_all(x, group)
        return original(x, group)

    _all_to_all_single._cfcompile_elastic = True
    ad._all_to_all_single = _all_to_all_single


def _split_hook_cls():
    from diffusers.hooks.context_parallel import ContextParallelSplitHook

    class _SplitHook(ContextParallelSplitHook):
        """diffusers' split hook (argument lookup, ``split_output``), splitting by the current logical group."""

        def __init__(self, metadata, state: _UlyssesState):
            super().__init__(metadata, None)
            self.state = state

        def pre_forward(self, module, *args, **kwargs):
            if self.state.active:
                for name in self.metadata:
                    # diffusers' Ulysses attention all-gathers a split mask over a process group (dist.all_gather)
                    if isinstance(name, str) and "mask" in name and self.module_forward_metadata \
                            ._get_parameter_from_args_kwargs(name, args, kwargs)[0] is not None:
                        raise NotImplementedError(f"ulysses: {type(module).__name__} got {name}; attention masks "
                                                  "are not supported over a logical group (pass None, or run the "
                                                  "request on a group of one)")
            return super().pre_forward(module, *args, **kwargs)

        def _prepare_cp_input(self, x, cp_input):
            state = self.state
            if not state.active or cp_input.expected_dims is not None and x.dim() != cp_input.expected_dims:
                return x
            n, size = state.group.size, x.shape[cp_input.split_dim]
            if size % n:
                raise ValueError(f"ulysses: a sequence of {size} along dim {cp_input.split_dim} does not split "
                                 f"evenly over the {n} ranks of {state.group.ranks}; pick a degree that divides it")
            return x.chunk(n, dim=cp_input.split_dim)[state.me]

    return _SplitHook


def _gather_hook_cls():
    from diffusers.hooks.hooks import ModelHook

    class _GatherHook(ModelHook):
        """All-gathers a module's outputs along each ``ContextParallelOutput.gather_dim`` over the logical group."""

        def __init__(self, outputs, state: _UlyssesState):
            super().__init__()
            self.outputs, self.state = outputs, state

        def post_forward(self, module, output):
            if not self.state.active:
                return output
            single = isinstance(output, torch.Tensor)
            output = [output] if single else list(output)
            if len(output) != len(self.outputs):
                raise ValueError(f"ulysses: {type(module).__name__} returned {len(output)} outputs, its plan "
                                 f"gathers {len(self.outputs)}")
            for i, cpo in enumerate(self.outputs):
                if cpo is not None:
                    output[i] = all_gather(output[i], self.state.group, dim=cpo.gather_dim)
            return output[0] if single else tuple(output)

    return _GatherHook


def enable_ulysses(model) -> _UlyssesState:
    """Install the hooks once on a diffusers transformer (idempotent); the model runs unsplit until a group is set.
    Returns the model's Ulysses state (``.group``)."""
    state = getattr(model, "_cfcompile_ulysses", None)
    if state is not None:
        return state
    from diffusers.hooks.context_parallel import ContextParallelOutput, _get_submodule_by_name
    from diffusers.hooks.hooks import HookRegistry

    plan = _check_plan(model)
    state = _UlyssesState(_attention_processors(model))
    _route_diffusers_all_to_all()
    split_hook, gather_hook = _split_hook_cls(), _gather_hook_cls()
    for name, entry in plan.items():
        modules = _get_submodule_by_name(model, name)
        for m in modules if isinstance(modules, list) else [modules]:
            registry = HookRegistry.check_if_exists_or_initialize(m)
            if isinstance(entry, dict):
                registry.register_hook(split_hook(entry, state), _SPLIT_HOOK.format(name))
            else:
                outs = [entry] if isinstance(entry, ContextParallelOutput) else list(entry)
                registry.register_hook(gather_hook(outs, state), _GATHER_HOOK.format(name))
    model._cfcompile_ulysses = state
    log.info("ulysses: hooks on %d plan entries of %s, %d attention processors", len(plan), type(model).__name__,
             len(state.processors))
    return state


def set_ulysses_group(model, group: LogicalGroup | None) -> None:
    """Run ``model``'s next calls with Ulysses over ``group`` (None or a group of one: unsplit). Host-side only."""
    enable_ulysses(model).set(group)


@contextlib.contextmanager
def ulysses(model, group: LogicalGroup | None):
    """``with ulysses(model, group): model(...)`` -- Ulysses over ``group`` inside, the previous group after."""
    state = enable_ulysses(model)
    previous = state.group
    state.set(group)
    try:
        yield model
    finally:
        state.set(previous)
