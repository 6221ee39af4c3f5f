"""The host store: a module's weights in (pinned) host memory, packed per transformer block and dtype.

``offload(model, device="cuda")`` packs every parameter into one host buffer per *group* (a transformer block, or a
top-level submodule outside the block lists, and a dtype) at 256-byte-aligned offsets, and points each parameter at
a view of that buffer which torch sees on ``device`` while it takes no device memory:

    host group buffer (pinned, cudaHostRegister'ed: no power-of-two rounding)
      [ attn.to_q.weight | pad | attn.to_q.bias | pad | ... | ff.net.2.weight ]
        ^ param.data = UVA view (a cuda tensor whose pointer is the host pointer)

Kernels that read such a parameter eagerly go over PCIe (slow but exact); the chunkflow backend instead copies the
group in fixed-size chunks into a device arena. The backend finds offloaded weights by data pointer
(`lookup`), never by name. On ``device="cpu"`` the same machinery runs with plain host memory (for CI).

Offloaded parameters become `HostParameter`s (an ``nn.Parameter`` subclass, swapped in place: same objects) so that
every way of changing a weight stays inside the store and is seen by compiled graphs:

    p.copy_(w), p.add_(d), load_state_dict   in place on the host bytes; bumps ``p._version``
    p.data += d  (peft's fuse / unfuse)      ``data`` returns ``p.detach()``, which shares ``p._version``
    p.data = w   (same shape and dtype)      copied into the host bytes (``p`` keeps its place in the store)
    p.data = w.half() / model.to(...) /      refused with an error that names the parameter: it would take the
      .cpu() / diffusers' layerwise casting   weight out of the store (`restore` first); ``Module._apply`` is
                                              checked before anything moves, so the module is left unchanged
    module._parameters[n] = new parameter    found by the next compiled call (not in the store) and copied back
                                              into its slot (`runtime.binding`), or by calling `offload` again

All weights of a group share one version counter (`_point`). A compiled call checks that it is called with the
same parameter objects as last time, none changed class since (`epoch`), and reads one counter per group
(`runtime.binding`); a change bumps the group's ``generation``, which makes resident and wrap-around device copies
of it stale.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import weakref

import torch
from torch import nn

from .config import format_bytes
from .pinned import CudaArrayInterface, align, pin, pins, unpin

log = logging.getLogger(__name__)

_STORE_ATTR = "_cfcompile_store"
_DATA = torch._C.TensorBase.data   # the C-level ``data`` descriptor that HostParameter wraps
_GROUPS_BY_PTR: "weakref.WeakValueDictionary[int, Group]" = weakref.WeakValueDictionary()
_ON_CHANGE: list = []   # callbacks (ptr, nbytes) run when a group's bytes change: `on_change`


def on_change(fn) -> None:
    """Call ``fn(ptr, nbytes)`` whenever the host bytes [ptr, ptr + nbytes) of a group change (`Group.changed`):
    what layers above keep derived from those bytes (the runtime's pending wrap-around copies) is stale then."""
    if fn not in _ON_CHANGE:
        _ON_CHANGE.append(fn)


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where one parameter lives inside its group (byte offsets)."""

    name: str
    offset: int
    nbytes: int
    shape: tuple[int, ...]


class Group:
    """One packed host buffer: the weights of one block in one dtype."""

    def __init__(self, name: str, dtype: torch.dtype, slots: list[Slot], nbytes: int, host: torch.Tensor,
                 device_view: torch.Tensor, pinned: bool):
        self.name, self.dtype, self.slots, self.nbytes = name, dtype, slots, nbytes
        self.host = host                # CPU tensor [nbytes // itemsize] of dtype, owns the memory
        self.device_view = device_view  # the same memory seen on the target device (UVA view; host itself on CPU)
        self.pinned = pinned            # all ``nbytes`` of ``host`` are registered (cudaHostRegister)
        self.unpin = None               # weakref.finalize that unregisters them (runs once: explicitly or at GC)
        self.generation = 0             # bumped whenever a weight of the group is seen changed (device copies of
        #                                 the group made at an older generation are stale)
        self.loners: dict[int, torch.Tensor] = {}   # byte offset -> a weight that could not share the group's
        #                                              version counter (`_point`): its own is counted in `version`
        self.seen_version = 0           # `version()` when a compiled call last accounted for the group's bytes
        self.store = None               # weakref to the HostStore holding it (set by `offload`)

    def slot_at(self, offset: int) -> Slot | None:
        return next((s for s in self.slots if s.offset == offset), None)

    def view(self, slot: Slot) -> torch.Tensor:
        """The slot's weight, seen on the device (what the parameter's data is)."""
        item = self.device_view.element_size()
        return self.device_view[slot.offset // item:(slot.offset + slot.nbytes) // item].view(slot.shape)

    def version(self) -> int:
        """A number that grows whenever a weight of the group is written in place: the version counter that all of
        the group's weights share (`_point`), plus the own counters of weights that could not share it."""
        v = self.device_view._version
        for p in self.loners.values():
            v += p._version
        return v

    def changed(self) -> None:
        """A weight of this group changed: device copies made before now are stale."""
        self.generation += 1
        for forget in _ON_CHANGE:   # e.g. the runtime's wrap-around copies of the old bytes
            forget(self.device_view.data_ptr(), self.nbytes)

    @property
    def weight_bytes(self) -> int:
        """Bytes of the weights themselves (``nbytes`` adds the padding to 256-byte offsets)."""
        return sum(s.nbytes for s in self.slots)

    @property
    def key(self) -> str:
        return f"{self.name}:{str(self.dtype).removeprefix('torch.')}"

    def __repr__(self) -> str:
        return f"Group({self.key}, {format_bytes(self.nbytes)}, {len(self.slots)} weights)"


@dataclasses.dataclass
class HostStore:
    """All groups of one offloaded module."""

    device: torch.device
    groups: list[Group]
    budgets: dict = dataclasses.field(default_factory=dict)   # bytes -> the model's implicit MemoryBudget (`backend`)

    @property
    def host_bytes(self) -> int:
        return sum(g.nbytes for g in self.groups)

    @property
    def pinned_bytes(self) -> int:
        """Bytes registered with cudaHostRegister: exactly the host buffers (no power-of-two rounding)."""
        return sum(g.nbytes for g in self.groups if g.pinned)

    @property
    def weight_bytes(self) -> int:
        """Bytes of the parameters themselves; ``host_bytes - weight_bytes`` is padding (< 256 B per weight)."""
        return sum(g.weight_bytes for g in self.groups)


class HostParameter(nn.Parameter):
    """A parameter whose bytes live in a host group (see the module docstring): ``data`` reads share the version
    counter, ``data`` writes stay in the store or are refused."""

    @property
    def data(self):
        return self.detach()

    @data.setter
    def data(self, value):
        _assign(self, value)

    def __setattr__(self, name, value):
        # A class change (``p.__class__ = ...``, ``torch.utils.swap_tensors`` with an outside tensor, which swaps
        # the classes first) may take the parameter out of the store while the object stays: compiled calls check
        # the epoch instead of every weight's class on every call (`runtime.binding`).
        if name == "__class__":
            global EPOCH
            EPOCH += 1
        super().__setattr__(name, value)


def _assign(p: torch.Tensor, value: torch.Tensor) -> None:
    found = lookup(p)
    if found is None:   # not (or no longer) in a store, e.g. a deep copy: an ordinary parameter
        _DATA.__set__(p, value)
        return
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"cfcompile: a parameter's data must be a tensor, got {type(value).__name__}")
    if value.data_ptr() == p.data_ptr() and value.shape == p.shape and value.dtype == p.dtype:
        return   # ``p.data += d``: already written in place through p.detach(), which bumped p._version
    group, offset = found
    if value.shape != p.shape or value.dtype != p.dtype or value.device != p.device:
        raise ValueError(
            f"cfcompile: a weight of group {group.key} (offset {offset}, {tuple(p.shape)} {p.dtype} on {p.device}) "
            f"lives in cfcompile's host store; setting it to a {tuple(value.shape)} {value.dtype} tensor on "
            f"{value.device} would take it out of the store. {_RESTORE_HINT}")
    with torch.no_grad():
        p.detach().copy_(value)   # into the host bytes; bumps p._version, so compiled graphs see the change


_RESTORE_HINT = ("Casts, moves and resizes of an offloaded model are refused (model.to(dtype), .half(), .float(), "
                 ".cpu(), .to(other device); diffusers' enable_layerwise_casting, enable_group_offload and "
                 "enable_model_cpu_offload move weights this way: cfcompile streams the weights itself, use it "
                 "instead of them). Call cfcompile.restore(model) first, change the model, then "
                 "cfcompile.offload(model, device) again. Nothing was changed.")


def _guarded_apply(module: nn.Module, fn, *args, **kwargs):
    """``Module._apply`` of an offloaded module: refuse up front (nothing moved yet) a function that would change
    an offloaded parameter's dtype or device; a no-op one (``model.to("cuda")`` of a model offloaded for cuda, a
    cast to the dtype it has) runs as usual."""
    kinds = {(p.dtype, p.device) for p in module.parameters() if isinstance(p, HostParameter) and lookup(p)}
    for dtype, device in kinds:
        try:
            probe = fn(torch.empty(0, dtype=dtype, device=device))
        except Exception:   # fn does not take an empty tensor: HostParameter's setter still guards each weight
            continue
        if isinstance(probe, torch.Tensor) and (probe.dtype != dtype or probe.device != device):
            raise ValueError(f"cfcompile: {type(module).__name__} is offloaded (weights {dtype} in host memory seen "
                             f"on {device}); this would make them {probe.dtype} on {probe.device}. {_RESTORE_HINT}")
    return type(module)._apply(module, fn, *args, **kwargs)


def _guard(module: nn.Module, on: bool) -> None:
    for m in module.modules():
        if on:
            object.__setattr__(m, "_apply", types.MethodType(_guarded_apply, m))
        else:
            m.__dict__.pop("_apply", None)


_MOVING_HOOKS = {"layerwise_casting": "enable_layerwise_casting", "group_offloading": "enable_group_offload",
                 "lazy_prefetch_group_offloading": "enable_group_offload"}


def _refuse_moving_hooks(module: nn.Module) -> None:
    """diffusers' and accelerate's hooks that move or cast weights around each forward cannot share the weights with
    the host store: refuse them at `offload`, saying how to undo them."""
    for name, m in module.named_modules():
        registry = getattr(m, "_diffusers_hook", None)
        hooks = getattr(registry, "hooks", {}) or {}
        found = sorted({_MOVING_HOOKS[h] for h in hooks if h in _MOVING_HOOKS})
        if getattr(m, "_hf_hook", None) is not None:
            found.append("accelerate's cpu_offload / enable_model_cpu_offload / enable_sequential_cpu_offload")
        if found:
            where = f"submodule {name!r}" if name else "the module"
            raise ValueError(
                f"offload: {where} has hooks that move or cast its weights on every call ({', '.join(found)}); "
                f"cfcompile streams the weights itself and cannot share them with those hooks. Remove them first "
                f"(diffusers: disable_group_offload() / pipe.remove_all_hooks(), or build the model again without "
                f"enable_layerwise_casting), then offload. Nothing was changed.")


EPOCH = 0   # bumped whenever a parameter object is pointed into or out of a store or a HostParameter changes class


def epoch() -> int:
    """Changes whenever a parameter object is pointed into or out of a store or a HostParameter changes class:
    call-time binding remembers parameter objects, and an object pointed elsewhere keeps its identity."""
    return EPOCH


def _point(p: nn.Parameter, view: torch.Tensor, group: Group, offset: int) -> None:
    """Make ``p`` a HostParameter whose data is ``view``, keeping the object (modules and users hold it).

    ``torch.utils.swap_tensors`` gives ``p`` the tensor of a parameter made from ``view``, so ``p`` shares the version
    counter of the group's buffer: a write to any weight of the group bumps one counter, which is all a compiled call
    reads to see that the group changed (`runtime.binding`), however many weights it has. Where the swap is not
    possible (weak references to ``p``, or ``p`` held by autograd) ``p`` keeps its own counter and the group counts
    it separately (`Group.loners`)."""
    global EPOCH
    EPOCH += 1
    new = torch.Tensor._make_subclass(HostParameter, view, p.requires_grad)   # shares view's version counter
    new.__dict__.update(p.__dict__)
    try:
        torch.utils.swap_tensors(p, new)
        group.loners.pop(offset, None)
    except RuntimeError:
        _DATA.__set__(p, view)
        p.__class__ = HostParameter
        group.loners[offset] = p


def _unpoint(p: nn.Parameter, data: torch.Tensor) -> None:
    """`_point` undone: ``p`` an ordinary parameter holding ``data``, with a version counter of its own."""
    global EPOCH
    EPOCH += 1
    new = nn.Parameter(data, requires_grad=p.requires_grad)
    new.__dict__.update(p.__dict__)
    try:
        torch.utils.swap_tensors(p, new)
    except RuntimeError:
        _DATA.__set__(p, data)
        p.__class__ = nn.Parameter


def lookup(t: torch.Tensor) -> tuple[Group, int] | None:
    """(group, byte offset) if ``t`` is a view of an offloaded group, else None."""
    if not isinstance(t, torch.Tensor) or t.is_meta or isinstance(t, torch._subclasses.FakeTensor):
        return None
    try:
        base = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensor subclasses without storage
        return None
    g = _GROUPS_BY_PTR.get(base)
    if g is None or g.dtype != t.dtype or g.device_view.device != t.device:
        return None
    return g, t.storage_offset() * t.element_size()


def _group_names(module: nn.Module) -> dict[str, str]:
    """Parameter name -> group name: the outermost ModuleList element holding it, else its top-level child."""
    blocks = {f"{name}.{i}" if name else str(i)
              for name, m in module.named_modules() if isinstance(m, nn.ModuleList) for i in range(len(m))}
    out = {}
    for pname, _ in module.named_parameters():
        parts = pname.split(".")
        prefixes = (".".join(parts[:k]) for k in range(1, len(parts)))
        out[pname] = next((p for p in prefixes if p in blocks), parts[0] if len(parts) > 1 else "<root>")
    return out


def _available_host_bytes() -> int | None:
    """Host memory that can be allocated without swapping: psutil's ``available`` if installed, else MemAvailable
    of /proc/meminfo; None where neither is known (the check is then skipped)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024   # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_host_memory(by_group: dict, dev: torch.device) -> None:
    """Refuse before allocating anything when the packed host copy cannot fit in available host memory (the
    weights exist twice while offload copies them: where they are now, and the new host buffers)."""
    need = sum(_pack(ps)[1] for ps in by_group.values())
    have = _available_host_bytes()
    if have is not None and need > have:
        raise MemoryError(
            f"offload: the weights need {format_bytes(need)} ({need} bytes) of host memory ({len(by_group)} packed "
            f"groups{', pinned' if pins(dev) else ''}), but only {format_bytes(have)} ({have} bytes) is available "
            f"(MemAvailable). Free "
            f"host memory, load the model in a smaller dtype (e.g. torch_dtype=torch.bfloat16), or build it on the "
            f"device it runs on. Nothing was changed.")


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: cannot parse {device!r} as a torch device ({e})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but CUDA is not available here; use device='cpu' to run the same "
                             "machinery on host memory")
        dev = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)
    elif dev.type != "cpu":
        raise ValueError(f"device: only 'cuda' and 'cpu' are supported, got {device!r}")
    return dev


def _pack(params: list[tuple[str, nn.Parameter]]) -> tuple[list[Slot], int]:
    """256-byte-aligned offsets of ``params`` in one buffer, and its size."""
    slots, offset = [], 0
    for pname, p in params:
        nbytes = p.numel() * p.element_size()
        slots.append(Slot(pname, offset, nbytes, tuple(p.shape)))
        offset = align(offset + nbytes)
    return slots, offset


def _params_by_group(module: nn.Module) -> dict[tuple[str, torch.dtype], list[tuple[str, nn.Parameter]]]:
    named = dict(module.named_parameters())  # deduplicated: a tied weight appears once
    by_group: dict[tuple[str, torch.dtype], list] = {}
    for pname, gname in _group_names(module).items():
        by_group.setdefault((gname, named[pname].dtype), []).append((pname, named[pname]))
    return by_group


class PlannedGroup(Group):
    """A group as `offload` would pack it, without memory: for planning a model on the meta device."""

    def __init__(self, name: str, dtype: torch.dtype, slots: list[Slot], nbytes: int, device: torch.device):
        super().__init__(name, dtype, slots, nbytes, host=None, device_view=None,  # type: ignore
                         pinned=pins(torch.device(device)))
        self.device = device


def planned_layout(module: nn.Module, device: str | torch.device = "cuda") -> dict[int, tuple[Group, int]]:
    """``id(parameter) -> (group, byte offset)`` as `offload` would lay the module out; allocates nothing, so it
    works on a model built on the meta device."""
    out = {}
    for (gname, dtype), params in _params_by_group(module).items():
        slots, nbytes = _pack(params)
        g = PlannedGroup(gname, dtype, slots, nbytes, torch.device(device))
        for (_, p), slot in zip(params, slots):
            out[id(p)] = (g, slot.offset)
    return out


def _build_group(name: str, dtype: torch.dtype, params: list[tuple[str, nn.Parameter]], device: torch.device):
    slots, offset = _pack(params)
    itemsize = torch.empty((), dtype=dtype).element_size()
    host = torch.empty(offset // itemsize, dtype=dtype)   # exactly ``offset`` bytes: what is pinned is what is used
    for (_, p), s in zip(params, slots):
        host[s.offset // itemsize:(s.offset + s.nbytes) // itemsize].copy_(p.detach().reshape(-1))
    cuda = device.type == "cuda"
    owner = CudaArrayInterface(host, host.data_ptr(), offset) if cuda else host
    unpinner = None
    if pins(device):
        pin(host)
        unpinner = weakref.finalize(owner, unpin, host.data_ptr())  # when the last view of the memory dies, or now
    try:
        view = torch.as_tensor(owner, device=device).view(dtype) if cuda else host
    except Exception:
        if unpinner is not None:
            unpinner()
        raise
    g = Group(name, dtype, slots, offset, host, view, unpinner is not None)
    g.unpin = unpinner
    return g


def _build_groups(by_group: dict, device: torch.device) -> list[Group]:
    """Every group's host buffer, pinned for CUDA. If pinning (or anything) fails, the buffers pinned so far are
    unpinned and freed, and the error says what to do; the module has not been touched yet."""
    groups: list[Group] = []
    try:
        for (gname, dtype), ps in by_group.items():
            groups.append(_build_group(gname, dtype, ps, device))
    except Exception as e:
        done = sum(g.nbytes for g in groups if g.pinned)
        for g in groups:
            if g.unpin is not None:
                g.unpin()
        key = f"{gname}:{str(dtype).removeprefix('torch.')}"
        if pins(device):
            raise RuntimeError(
                f"offload: pinning the host copy of group {key} failed ({e}) after {len(groups)} of "
                f"{len(by_group)} groups ({format_bytes(done)}) were pinned; those were unpinned again and nothing "
                f"in the module was changed. The host may be short of pinnable (page-locked) memory: raise "
                f"`ulimit -l` (containers: --ulimit memlock=-1), free host memory, or use a smaller dtype. A "
                f"pageable fallback is not offered: parameters are seen on the GPU through pinned memory (UVA).") \
                from e
        raise
    return groups


def offload(module: nn.Module, device: str | torch.device = "cuda") -> HostStore:
    """Move every parameter of ``module`` into (pinned) host memory, seen by torch on ``device``.

    Buffers move to ``device``. A model already on the GPU is moved off it and its device memory freed. Calling it
    again with the same device returns the existing store. On any error the module is left as it was.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"offload: expected a torch.nn.Module, got {type(module).__name__}")
    dev = resolve_device(device)
    store: HostStore | None = getattr(module, _STORE_ATTR, None)
    if store is not None:
        if store.device == dev:
            _take_back(module, store)      # parameters replaced since (load_state_dict(assign=True), ...)
            _guard(module, True)           # submodules added since
            _prepare_for_compile(module)   # parallelism may have been enabled since
            return store
        raise ValueError(f"offload: module is already offloaded for {store.device}; call "
                         f"cfcompile.restore(module) before offloading it for {dev}")
    _refuse_moving_hooks(module)

    named = dict(module.named_parameters())  # deduplicated: a tied weight appears once
    if not named:
        raise ValueError("offload: the module has no parameters")
    for pname, p in named.items():
        if type(p) not in (nn.Parameter, HostParameter) or type(p.data) is not torch.Tensor:
            raise TypeError(
                f"offload: parameter {pname!r} is a {type(p.data).__name__}, a tensor subclass (e.g. a quantized "
                f"weight); only plain tensors can be offloaded, their bytes are copied as they are. Supported: "
                f"plain int8 / float8 (torch.float8_e4m3fn, ...) weights with their scales as ordinary parameters, "
                f"dequantized in forward; or dequantize this weight first. Nothing was changed.")
        if p.device.type == "meta":
            raise ValueError(f"offload: parameter {pname!r} is on the meta device; load real weights first")
    by_group = _params_by_group(module)
    _check_host_memory(by_group, dev)

    # Build every group first: nothing in the module changes until all host copies exist.
    groups = _build_groups(by_group, dev)
    try:
        buffers = [(b, b.to(dev)) for b in module.buffers()]
    except Exception:
        for g in groups:
            if g.unpin is not None:
                g.unpin()
        raise

    was_on_gpu = any(p.device.type == "cuda" for p in named.values())
    for g, ((_, _), ps) in zip(groups, by_group.items()):
        for (pname, p), s in zip(ps, g.slots):
            _point(p, g.view(s), g, s.offset)
        g.seen_version = g.version()
        _GROUPS_BY_PTR[g.device_view.untyped_storage().data_ptr()] = g
    for b, moved in buffers:
        b.data = moved
    store = HostStore(dev, groups)
    for g in groups:
        g.store = weakref.ref(store)
    setattr(module, _STORE_ATTR, store)
    _guard(module, True)
    _prepare_for_compile(module)
    if was_on_gpu:
        torch.cuda.empty_cache()
    log.info("offloaded %d parameters into %d host groups, %s (%s pinned; weights %s) for %s", len(named),
             len(groups), format_bytes(store.host_bytes), format_bytes(store.pinned_bytes),
             format_bytes(store.weight_bytes), dev)
    return store


def _prepare_for_compile(module: nn.Module) -> None:
    """What keeps a diffusers model with context parallelism in one graph per forward (`cfcompile._compat`)."""
    from . import _compat

    if _compat.prepare_context_parallel(module):
        log.debug("primed diffusers' context-parallel hooks of %s", type(module).__name__)


def restore(module: nn.Module, device: str | torch.device | None = None) -> None:
    """Undo `offload`: parameters become ordinary tensors on ``device`` (default: the store's device), and the host
    store is freed. Buffers stay where they are."""
    store: HostStore | None = getattr(module, _STORE_ATTR, None)
    if store is None:
        raise ValueError("restore: module was not offloaded with cfcompile.offload")
    dev = store.device if device is None else torch.device(device)
    named = dict(module.named_parameters())
    # Copy everything first, then swap, so an out-of-memory error leaves the module offloaded and usable.
    moved = {n: p.data.to(dev, copy=True) for n, p in named.items() if lookup(p) is not None}
    for n, t in moved.items():
        _unpoint(named[n], t)
    for p in named.values():
        if type(p) is HostParameter:   # not in the store any more (e.g. a deep copy's): just the class
            p.__class__ = nn.Parameter
    delattr(module, _STORE_ATTR)
    _guard(module, False)
    for g in store.groups:
        _GROUPS_BY_PTR.pop(g.device_view.untyped_storage().data_ptr(), None)


def store_of(module: nn.Module) -> HostStore | None:
    return getattr(module, _STORE_ATTR, None)


def take_back(p: torch.Tensor, group: Group, offset: int) -> None:
    """Copy parameter ``p`` (replaced by a tensor outside the store) into its slot of ``group`` and point it there
    again. The slot must hold a weight of ``p``'s shape and dtype."""
    slot = group.slot_at(offset)
    if slot is None or slot.shape != tuple(p.shape) or group.dtype != p.dtype:
        raise ValueError(f"cfcompile: cannot take a {tuple(p.shape)} {p.dtype} weight back into group {group.key} at "
                         f"offset {offset}: the slot there is {slot}. {_RESTORE_HINT}")
    view = group.view(slot)
    with torch.no_grad():
        view.copy_(p.detach())
    _point(p, view, group, offset)
    group.changed()


def _take_back(module: nn.Module, store: HostStore) -> None:
    """`offload` of an offloaded module: parameters replaced by tensors outside the store go back into their slots
    (checked for all before anything is copied)."""
    slots = {s.name: (g, s) for g in store.groups for s in g.slots}
    todo = []
    for pname, p in module.named_parameters():
        if lookup(p) is not None:
            continue
        if pname not in slots:
            log.info("offload: parameter %s was added after the module was offloaded; it stays where it is (%s)",
                     pname, p.device)
            continue
        g, s = slots[pname]
        if s.shape != tuple(p.shape) or g.dtype != p.dtype:
            raise ValueError(f"offload: parameter {pname!r} is now {tuple(p.shape)} {p.dtype}, its slot in the host "
                             f"store holds {s.shape} {g.dtype}. {_RESTORE_HINT}")
        todo.append((p, g, s.offset))
    for p, g, offset in todo:
        take_back(p, g, offset)
