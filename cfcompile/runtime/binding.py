"""Call-time binding: which host groups a compiled graph streams from, decided from the weights it is called with.

Dynamo lifts parameters as graph inputs, so one compiled graph serves every module of the same structure (each block
compiled on its own, diffusers' ``compile_repeated_blocks``, a graph break inside every block, MoE experts). A plan
belongs to a weight *layout* (each weight's byte offset in its group); on every call the `Binder` finds, for each
plan group, the host group the call's weights live in and the shift of their offsets:

    plan group "blocks.0:bf16" reads   w_q @ 0, w_k @ 4096, ...         (traced with block 0)
    call with block 7's weights    ->  (group blocks.7:bf16, shift 0)     copies read block 7's host bytes
    call with expert 3 of a block  ->  (group blocks.2:bf16, shift 3·E)   the same offsets, E bytes per expert

All weights of a plan group must sit in one host group at the planned offsets plus one common shift; otherwise the
call raises `LayoutMismatch` (the backend compiles a graph for that layout). Weights found outside the store
(``module._parameters[name]`` replaced) are copied back into their slot when the group's other weights say where it
is (`offload.take_back`), else the call raises naming the parameter.

Change detection, per call: the same parameter objects as a call seen before (none pointed anywhere or changed
class since: `offload.epoch`), and the version counter that each bound group's weights share (`offload._point`)
unchanged; otherwise the slow path above runs again, and a group whose counter moved since a call last accounted for it (``Group.seen_version``) bumps its
``generation``, which makes its resident copies refresh and its wrap-around copies drop.
"""

from __future__ import annotations

import importlib
import operator

import torch

from ..offload import Group, HostParameter, lookup, take_back

# the module (``cfcompile.offload`` the attribute is the function): its EPOCH read as a global, not through a call
_offload = importlib.import_module("..offload", __package__)

_VERSION = operator.attrgetter("_version")


class LayoutMismatch(RuntimeError):
    """The call's weights are laid out differently from the plan's (offsets that do not shift together)."""


class Entry:
    """One weight set a graph was called with: its parameter objects, their binding (None: laid out differently
    from the plan) and what the fast path checks them against; ``next`` is the entry of the call that followed this
    one last time (the call order, `compiler.backend`)."""

    __slots__ = ("objects", "binding", "counters", "versions", "epoch", "next")

    def __init__(self, objects: tuple, binding, epoch: int):
        self.objects, self.binding, self.epoch = objects, binding, epoch
        # each bound group's shared version counter and its loners' (`offload._point`)
        self.counters = () if binding is None else \
            tuple(t for g, _ in binding for t in (g.device_view, *g.loners.values()))
        self.versions = tuple(map(_VERSION, self.counters))
        self.next: Entry | None = None


class Binder:
    """Binds one compiled graph's plan groups to host groups on each call (see the module docstring)."""

    def __init__(self, plan, names: dict[int, str] | None = None):
        by_key: dict[str, list[tuple[int, int]]] = {}
        for w in plan.weights:
            by_key.setdefault(w.group, []).append((w.input_index, w.offset))
        self.keys = [g.key for g in plan.groups]
        self.members = [by_key.get(k, []) for k in self.keys]   # per plan group: (input index, planned offset)
        self.indices = [i for m in self.members for i, _ in m]
        get = operator.itemgetter(*self.indices) if self.indices else (lambda a: ())
        self._weights = get if len(self.indices) != 1 else (lambda a: (get(a),))
        self.names = names or {}                                  # input index -> the parameter's source, for errors
        self._seen: dict[int, list[Entry]] = {}                   # the first weight's id -> its entries
        self._entries = 0

    def bind(self, args) -> Entry:
        """The entry of this call's weights: per plan group, (host group, byte shift) in ``entry.binding``.

        Fast path (every call of a model whose weights did not change): the same parameter objects as a call seen
        before, no parameter pointed into or out of a store since (`offload.EPOCH`: also bumped when a HostParameter
        changes class, e.g. swapped for an outside tensor by ``torch.utils.swap_tensors``), and each bound group's
        shared version counter unchanged. It compares the parameters' Python objects by identity and reads one
        counter per group, never a weight's tensor: what a block call pays for are the reads that miss the CPU's
        caches after the previous block's kernel launches (30 µs for a Flux block on the H200 host)."""
        ws = self._weights(args)
        for entry in self._seen.get(id(ws[0]) if ws else 0, ()):
            # C-level loops: identity of the weights (an entry holds its objects, so their ids are theirs alone),
            # then the version counters of the bound groups
            if entry.epoch == _offload.EPOCH and all(map(operator.is_, ws, entry.objects)):
                if tuple(map(_VERSION, entry.counters)) == entry.versions:
                    if entry.binding is None:
                        raise LayoutMismatch("chunkflow: these weights are laid out differently (seen before)")
                    return entry
                break
        try:
            binding = self._bind(args)
        except LayoutMismatch:
            self._remember(ws, None)
            raise
        ws = self._weights(args)
        if not all(type(w) is HostParameter for w in ws):
            # in the store but no longer a HostParameter (its class was changed): its ``data`` setter would move it
            # out without a trace, so no fast path for it (this entry is never found again: an epoch never seen)
            return Entry(ws, binding, -1)
        return self._remember(ws, binding)

    def _remember(self, ws: tuple, binding) -> Entry:
        if self._entries > 4096:   # a graph reused for very many weight sets: keep the table bounded
            self._seen.clear()
            self._entries = 0
        # keyed by the first weight's id (weight sets that share their first weight, e.g. an MoE graph whose first
        # input is the router's, share a key: a short list); an entry holds its objects, so a freed parameter's id
        # cannot be reused while it is there
        entry = Entry(ws, binding, _offload.EPOCH)
        entries = self._seen.setdefault(id(ws[0]) if ws else 0, [])
        for k, old in enumerate(entries):
            if all(map(operator.is_, ws, old.objects)):
                entry.next = old.next   # the call order learnt so far still holds
                entries[k] = entry
                return entry
        entries.insert(0, entry)
        self._entries += 1
        return entry

    def _bind(self, args) -> tuple[tuple[Group, int], ...]:
        out = []
        for key, members in zip(self.keys, self.members):
            group, shift, missing = None, 0, []
            for i, offset in members:
                found = lookup(args[i])
                if found is None:
                    missing.append((i, offset))
                    continue
                g, o = found
                if group is None:
                    group, shift = g, o - offset
                elif g is not group or o - offset != shift:
                    raise LayoutMismatch(
                        f"chunkflow: the weights this graph reads as group {key} are laid out differently in this "
                        f"call ({self._name(i)} is in {g.key} at byte {o}, expected {group.key} at "
                        f"{offset + shift})")
            if group is None:
                i = members[0][0]
                raise RuntimeError(
                    f"chunkflow: the weight {self._name(i)} (and the others of its block) is not in cfcompile's host "
                    f"store: it was replaced after cfcompile.offload (e.g. load_state_dict(assign=True), or a new "
                    f"nn.Parameter set on the module). Call cfcompile.offload(model) again to copy the new weights "
                    f"into the store, or cfcompile.restore(model) and offload it again.")
            for i, offset in missing:   # replaced by a tensor outside the store: back into its slot
                take_back(args[i], group, offset + shift)
            v = group.version()
            if v != group.seen_version:   # written in place since a call last accounted for it
                group.seen_version = v
                group.changed()
            out.append((group, shift))
        return tuple(out)

    def _name(self, i: int) -> str:
        return self.names.get(i, f"graph input {i}")


def source_names(gm: torch.fx.GraphModule) -> dict[int, str]:
    """Graph input index -> Dynamo's name for it (``L['self']....weight``), for error messages."""
    out = {}
    for i, n in enumerate(gm.graph.find_nodes(op="placeholder")):
        src = getattr(n, "_dynamo_source", None)
        name = getattr(src, "name", None)
        out[i] = (name() if callable(name) else name) if name is not None else n.name
    return out
