"""Ulysses sequence parallelism for diffusers transformers over a :class:`LogicalGroup`, regroupable per call.

    model = FluxTransformer2DModel(...)                 # the same weights on every rank
    with cfcompile.elastic.ulysses(model, form_group((2, 0))):
        out = model(**inputs)                           # members pass the full inputs and get the full output

What runs, with the model's own ``_cp_plan`` (the one diffusers' ``enable_parallelism`` uses)::

    model inputs / split_output modules   x -> x.chunk(N, split_dim)[my group rank]        (our split hook,
                                          by a tensor index: see below)
    attention (every processor)           diffusers' TemplatedUlyssesAttention: heads <-> sequence all-to-alls,
                                          the attention backend in between; its all-to-all goes over the
                                          LogicalGroup (cfcompile_elastic.all_to_all_single), not a process group;
                                          a split attention mask is all-gathered over it (..all_gather)
    ContextParallelOutput modules         y -> all_gather(y, group, dim=gather_dim)         (our gather hook)

Reused from diffusers: the plan, the argument lookup of its split hook (we subclass it), and its Ulysses
attention (reached by giving each processor a stand-in for ``ParallelConfig`` whose "mesh" returns the group).
diffusers calls a process group in two places on that path, both routed once per process (LogicalGroups and
ranks tensors to our ops, everything else to the original, so diffusers' own CP keeps working in the same process):
the module function ``attention_dispatch._all_to_all_single(x, group)``, and ``dist.all_gather(masks, mask,
group=group)`` for a split attention mask (e.g. Qwen-Image's ``encoder_hidden_states_mask``), where ``dist`` is
that module's global (replaced by a module that forwards all but ``all_gather`` to torch.distributed).

Changing the group is a host-side assignment (:func:`set_ulysses_group`): no communicator and no weight copy.
Under ``torch.compile`` the group is a run-time value, so another group of the same size runs the same graph::

    state.ranks   int64 CPU tensor (N,), the group's global ranks   -> the ops' ``ranks`` argument
    state.index   int64 tensor (1,) on the model's device, this rank's position -> x.unflatten(d, (N, -1))
                                                                        .index_select(d, index).squeeze(d)

one pair per size N, refilled in place; only N is a constant of the graph (a new degree recompiles). A group of
one, or ``None``, runs the model unsplit. Ring attention and ``ulysses_anything`` are not supported over a logical
group.
"""

from __future__ import annotations

import contextlib
import logging
import types
import weakref

import torch
import torch.distributed as dist

from .collectives import all_gather, all_to_all
from .groups import LogicalGroup

log = logging.getLogger(__name__)

_SPLIT_HOOK = "cfcompile_ulysses_split---{}"
_GATHER_HOOK = "cfcompile_ulysses_gather---{}"


class _UlyssesState:
    """The model's current logical group; stands in for diffusers' ``ParallelConfig`` *and* its
    ``ContextParallelConfig`` and Ulysses "mesh", as far as TemplatedUlyssesAttention reads them. Traced code reads
    only ``size`` (a constant), ``ranks`` and ``index`` (tensors): never ``group``, whose ints Dynamo would guard."""

    ring_degree = 1
    ulysses_anything = False
    ring_anything = False

    def __init__(self, processors, model):
        self.group: LogicalGroup | None = None
        self.size = 1
        self.ranks: torch.Tensor | None = None    # see the module docstring
        self.index: torch.Tensor | None = None
        self.processors = processors
        self._model = weakref.ref(model)
        self._tensors: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def context_parallel_config(self) -> "_UlyssesState":
        return self

    @property
    def _ulysses_mesh(self) -> "_UlyssesState":
        return self

    @property
    def ulysses_degree(self) -> int:
        return self.size

    def get_group(self) -> torch.Tensor:
        return self.ranks

    @property
    def active(self) -> bool:
        return self.size > 1

    def _device(self) -> torch.device:
        model = self._model()
        p = next(model.parameters(), None) if model is not None else None
        return p.device if p is not None and p.device.type != "meta" else torch.device("cpu")

    def set(self, group: LogicalGroup | None) -> None:
        me = 0
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
            me = group.rank_in_group(rank)
        n = 1 if group is None else group.size
        self.group, self.size, self.ranks, self.index = group, n, None, None
        if n > 1:
            key = (n, self._device())
            if key not in self._tensors:
                ranks = torch.empty(n, dtype=torch.int64)
                torch._dynamo.mark_static(ranks)   # another size is another graph, never a dynamic one
                self._tensors[key] = ranks, torch.empty(1, dtype=torch.int64, device=key[1])
            self.ranks, self.index = self._tensors[key]
            # in place: a compiled graph holds these tensors as inputs; on a GPU the fill is stream-ordered
            self.ranks.copy_(torch.tensor(group.ranks, dtype=torch.int64))
            self.index.fill_(me)
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


def _is_logical(group) -> bool:
    return isinstance(group, (LogicalGroup, torch.Tensor))


def _route_diffusers_collectives() -> None:
    """Send diffusers' Ulysses collectives over a logical group to our ops (once per process); see the module
    docstring for the two call sites."""
    import diffusers.models.attention_dispatch as ad

    if not getattr(ad._all_to_all_single, "_cfcompile_elastic", False):
        original = ad._all_to_all_single

        def _all_to_all_single(x: torch.Tensor, group) -> torch.Tensor:
            if _is_logical(group):
                # diffusers lays out (group size, ...) so that equal dim-0 splits are the per-member chunks
                return all_to_all(x, group)
            return original(x, group)

        _all_to_all_single._cfcompile_elastic = True
        ad._all_to_all_single = _all_to_all_single

    if not getattr(ad.dist, "_cfcompile_elastic", False):
        ad.dist = _dist_for_diffusers(ad.dist)


class _Completed:
    """The ``Work`` handle of a collective that has already run (``async_op=True`` over a logical group)."""

    def wait(self, timeout=None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True


def _dist_for_diffusers(original) -> types.ModuleType:
    """A module that is ``original`` (torch.distributed) except for ``all_gather`` over a logical group; a module,
    so Dynamo resolves its attributes as it does torch.distributed's (PEP 562 ``__getattr__`` for the rest)."""

    def _all_gather(tensor_list, tensor, group=None, async_op=False):
        if not _is_logical(group):
            return original.all_gather(tensor_list, tensor, group=group, async_op=async_op)
        out = all_gather(tensor[None], group)          # (N, *tensor.shape); None: not a member
        if out is not None:
            if len(tensor_list) != out.shape[0]:
                raise ValueError(f"all_gather: {len(tensor_list)} output tensors for a group of {out.shape[0]} "
                                 "ranks")
            for t, part in zip(tensor_list, out.unbind(0)):
                t.copy_(part)
        # ours is synchronous: an async caller gets a handle that is already complete
        return _Completed() if async_op else None

    mod = types.ModuleType(f"cfcompile.elastic.ulysses.<{original.__name__} for diffusers>")
    mod.__getattr__ = lambda name: getattr(original, name)
    mod.all_gather = _all_gather
    mod._cfcompile_elastic = True
    return mod


def _split_hook_cls():
    from diffusers.hooks.context_parallel import ContextParallelSplitHook

    class _SplitHook(ContextParallelSplitHook):
        """diffusers' split hook (argument lookup, ``split_output``), splitting by the current logical group."""

        def __init__(self, metadata, state: _UlyssesState):
            super().__init__(metadata, None)
            self.state = state

        def _prepare_cp_input(self, x, cp_input):
            state = self.state
            if not state.active or cp_input.expected_dims is not None and x.dim() != cp_input.expected_dims:
                return x
            n, dim = state.size, cp_input.split_dim % x.dim()
            size = x.shape[dim]
            if size % n:
                raise ValueError(f"ulysses: a sequence of {size} along dim {cp_input.split_dim} does not split "
                                 f"evenly over the {n} ranks of {state.group.ranks}; pick a degree that divides it")
            # x.chunk(n, dim)[me], with me a tensor: a Python int would be a constant of the compiled graph
            index = state.index if state.index.device == x.device else state.index.to(x.device)
            return x.unflatten(dim, (n, size // n)).index_select(dim, index).squeeze(dim)

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
                    output[i] = all_gather(output[i], self.state.ranks, dim=cpo.gather_dim)
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
    state = _UlyssesState(_attention_processors(model), model)
    _route_diffusers_collectives()
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
