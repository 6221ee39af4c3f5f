"""The first-order model: estimate each node of the scheduled graph, then play the two streams forward.

    compute stream:  node costs add up; wait_(j) stalls it until copy j is done
    copy stream:     prefetch_(j) starts when the copy stream is free *and* the compute stream has reached the
                     prefetch (the copy waits for the work issued before it), and takes bytes / H2D bandwidth

A prefetch is *hidden* when its copy is done before the compute stream reaches its wait; otherwise the stall is
the difference. The predicted step time is where the compute stream ends. Node costs are rooflines: FLOPs of ops in
torch's flop registry against the matmul peak, bytes in and out against memory bandwidth, plus a launch overhead.
Pointwise ops that Inductor fuses are counted one by one, so memory-bound time is an upper bound.
"""

from __future__ import annotations

import dataclasses
import operator

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from .profiles import DeviceProfile

@dataclasses.dataclass(frozen=True)
class GroupPrediction:
    index: int              # streamed group index (event id)
    bytes: int
    copy_ms: float
    cover_ms: float         # compute issued between the prefetch and the wait: what can hide the copy
    stall_ms: float         # how long the wait holds the compute stream

    @property
    def hidden(self) -> bool:
        return self.stall_ms <= 1e-6


@dataclasses.dataclass(frozen=True)
class Prediction:
    profile: str
    step_ms: float
    compute_ms: float
    copy_ms: float
    groups: tuple[GroupPrediction, ...]

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        for g, p in zip(d["groups"], self.groups):
            g["hidden"] = p.hidden
        return d


def _nbytes(x) -> int:
    try:
        return int(x.numel()) * x.element_size() if isinstance(x, torch.Tensor) else 0
    except (RuntimeError, TypeError):  # unbacked symbolic sizes
        return 0


def node_ms(node: fx.Node, profile: DeviceProfile) -> float:
    """Roofline estimate of one post-grad node (0 for views, placeholders and cfcompile's own ops)."""
    if node.op != "call_function" or node.target is operator.getitem or getattr(node.target, "is_view", False):
        return 0.0
    if getattr(node.target, "namespace", None) == "cfcompile":
        return 0.0
    vals = lambda a: a.meta.get("val") if isinstance(a, fx.Node) else a  # noqa: E731
    args = [vals(a) for a in node.args]
    kwargs = {k: vals(v) for k, v in node.kwargs.items()}
    out = node.meta.get("val")
    moved = sum(_nbytes(t) for t in tree_flatten((args, kwargs))[0]) + sum(_nbytes(t) for t in tree_flatten(out)[0])
    ms = moved / (profile.memory_gbs * profile.memory_efficiency * 1e9) * 1e3
    key = getattr(node.target, "overloadpacket", None)
    if key in flop_registry:
        try:
            flops = flop_registry[key](*args, **kwargs, out_val=out)
            ms = max(ms, float(flops) / (profile.matmul_tflops * profile.matmul_efficiency * 1e12) * 1e3)
        except Exception:  # a formula that cannot take these (symbolic) shapes: keep the memory estimate
            pass
    return ms + profile.kernel_overhead_us / 1e3


def predict(graph: fx.Graph, profile: DeviceProfile, copy_bytes: dict[int, tuple[int, int]]) -> Prediction:
    """Play the scheduled ``graph`` forward; ``copy_bytes[j] = (bytes, number of copies)`` of prefetch j."""
    t_compute = t_copy = compute = 0.0
    issued: dict[int, float] = {}
    done: dict[int, float] = {}
    out = []
    for n in graph.nodes:
        name = getattr(n.target, "_opname", None) if getattr(n.target, "namespace", None) == "cfcompile" else None
        if name == "prefetch_":
            j = n.args[6]  # prefetch_(slot, fences, src, src_offsets, dst_offsets, numels, event, overlap)
            nbytes, copies = copy_bytes[j]
            start = max(t_copy, t_compute)
            t_copy = start + profile.copy_ms(nbytes, copies)
            issued[j], done[j] = t_compute, t_copy
        elif name == "wait_":
            j = n.args[1]
            stall = max(0.0, done[j] - t_compute)
            nbytes, copies = copy_bytes[j]
            out.append(GroupPrediction(j, nbytes, profile.copy_ms(nbytes, copies), t_compute - issued[j], stall))
            t_compute += stall
        elif name is None:
            ms = node_ms(n, profile)
            t_compute += ms
            compute += ms
    return Prediction(profile.name, t_compute, compute, sum(g.copy_ms for g in out), tuple(out))
