"""Per-node cost and activation-memory estimates for a Dynamo graph, computed on fake tensors.

The planner works on the Dynamo graph (the one whose node indices `WeightRead.first_use` / `last_use` refer to).
Each node is run once on fake tensors under a dispatch mode that records the ATen ops it becomes:

    compute op      (mm, addmm, bmm, convolution: torch's ``flop_registry``; attention as one fused kernel)
                    ms = max(FLOPs / (peak x efficiency), bytes in + out / bandwidth) + launch
    memory-bound op (everything else that writes a tensor): fused as Inductor fuses them -- reading another
                    memory-bound op's output is free unless Inductor writes it to memory (`_materialized`: a compute
                    op or the graph reads it, a norm's output read through another layout, a tensor read on both
                    sides of a matmul); a launch only where a chain starts
    live bytes      activations alive after each node: every node's output from the node that makes it to its last
                    reader, held as Inductor's generated code holds buffers (a dead one is kept for the next tensor
                    of its dtype and size, `_pooled_live_bytes`); inputs stay alive (the caller holds them); weights
                    excluded

Views and cfcompile's own ops cost nothing. The device memory of the weights is counted by the plan (arena +
resident), not here.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from .profiles import DeviceProfile

aten = torch.ops.aten


@dataclasses.dataclass(frozen=True)
class Collective:
    """One functional collective of the graph: launched at node ``launch``, waited for at node ``wait`` (its
    time is charged to the wait node: the compute stream blocks there until it completes). A synchronous one
    (``cfcompile_elastic`` ops over a logical group) has ``launch == wait``."""

    kind: str               # all_to_all_single, all_gather_into_tensor, reduce_scatter_tensor, all_reduce
    launch: int
    wait: int
    bytes: int              # of the tensor each rank sends
    group_size: int
    ms: float


@dataclasses.dataclass(frozen=True)
class GraphCosts:
    """Estimates for the nodes of one graph, indexed like ``list(graph.nodes)``."""

    profile: str
    node_ms: tuple[float, ...]          # compute, plus the collectives the node waits for (per rank)
    live_bytes: tuple[int, ...]         # activation bytes alive after each node (per rank)
    flops: float                        # of the whole graph (all ranks)
    collective_ms: tuple[float, ...] = ()  # the part of node_ms spent in collectives (sequence parallelism)
    collectives: tuple[Collective, ...] = ()  # the graph's own collectives, in graph order
    class_ms: tuple[tuple[str, float], ...] = ()  # compute ms by kernel class (matmul, attention, memory-bound)

    @property
    def total_ms(self) -> float:
        return sum(self.node_ms)

    @property
    def peak_activation_bytes(self) -> int:
        return max(self.live_bytes, default=0)

    def cumulative(self) -> list[float]:
        """``c[i]`` = compute ms of the nodes before node ``i`` (``c[len] = total``)."""
        out, t = [0.0], 0.0
        for ms in self.node_ms:
            t += ms
            out.append(t)
        return out



def _sdpa_cpu_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    b, h, sq, d = query.shape
    sk, dv = key.shape[-2], value.shape[-1]
    return 2 * b * h * sq * sk * d + 2 * b * h * sq * sk * dv


_EXTRA_FLOPS = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


def _nbytes(x) -> int:
    if not isinstance(x, torch.Tensor):
        return 0
    try:
        return int(x.numel()) * x.element_size()
    except (RuntimeError, TypeError):  # unbacked symbolic sizes
        return 0


@dataclasses.dataclass
class _Op:
    node: int
    flops: float
    efficiency: str                     # "matmul" / "attention" for compute ops, "" for memory-bound ones
    ins: list[tuple[int, int]]          # (storage key, bytes)
    outs: list[tuple[int, int]]
    in_layouts: list[tuple] = dataclasses.field(default_factory=list)   # (shape, stride, offset) per input
    out_layouts: list[tuple] = dataclasses.field(default_factory=list)
    reduction: bool = False             # a memory-bound op whose output has fewer elements than its input


def _layout(t: torch.Tensor) -> tuple:
    try:
        return tuple(t.shape), tuple(t.stride()), int(t.storage_offset())
    except (RuntimeError, TypeError):
        return ()


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


class _Recorder(TorchDispatchMode):
    """Records each ATen op that launches a kernel: its FLOPs and the storages it reads and writes."""

    def __init__(self):
        super().__init__()
        self.node = 0
        self.ops: list[_Op] = []
        self._keep: list[torch.Tensor] = []   # storage keys must stay unique while we run

    def record(self, flops: float, efficiency: str, ins, outs) -> None:
        self._keep.extend(outs)
        reduction = not efficiency and bool(ins) and \
            max(_numel(t) for t in outs) < max(_numel(t) for t in ins)
        self.ops.append(_Op(self.node, flops, efficiency, [(_key(t), _nbytes(t)) for t in ins],
                            [(_key(t), _nbytes(t)) for t in outs], [_layout(t) for t in ins],
                            [_layout(t) for t in outs], reduction))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if func._schema.is_mutable or any(a.alias_info is not None for a in func._schema.returns) \
                or func.namespace in ("cfcompile", "cfcompile_elastic", "prim", "_c10d_functional") or not outs:
            return out  # views, metadata queries, bookkeeping: no kernel of their own
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        formula = flop_registry.get(func.overloadpacket) or _EXTRA_FLOPS.get(func.overloadpacket)
        flops = 0.0
        if formula is not None:
            try:
                flops = float(formula(*args, **kwargs, out_val=out))
            except Exception:  # a formula that cannot take these shapes: treat the op as memory-bound
                flops = 0.0
        self.record(flops, "matmul" if flops else "", ins, outs)
        return out


def _numel(t: torch.Tensor) -> int:
    try:
        return int(t.numel())
    except (RuntimeError, TypeError):
        return 0


def _materialized(ops: list[_Op], outputs: set[int]) -> set[int]:
    """Storages Inductor writes to memory: what a matmul or attention kernel reads, what the graph returns, and the
    output of a fused chain that went through a reduction (a norm) when a later op reads it at other indices
    (through a view of another layout, e.g. rotary's pairs): those elements are computed by other threads of the
    reduction kernel, so the consumer cannot be fused into it and reads the buffer back; and an output read on both
    sides of a matmul or attention (e.g. the residual stream, read by the norm before a block's matmuls and by the
    residual add after them): one kernel cannot hold it across."""
    materialized = set(outputs) | {k for op in ops if op.efficiency for k, _ in op.ins}
    first_read: dict[int, int] = {}
    computes_before = list(itertools.accumulate(1 if op.efficiency else 0 for op in ops))
    for i, op in enumerate(ops):
        for k, _ in op.ins:
            j = first_read.setdefault(k, i)
            if computes_before[i] - computes_before[j] > (1 if op.efficiency else 0):
                materialized.add(k)
    layout_of: dict[int, tuple] = {}
    after_reduction: set[int] = set()
    for op in ops:
        if not op.efficiency:
            for (k, _), lay in zip(op.ins, op.in_layouts):
                if k in after_reduction and k in layout_of and lay and lay != layout_of[k]:
                    materialized.add(k)
            if op.reduction or any(k in after_reduction for k, _ in op.ins):
                after_reduction.update(k for k, _ in op.outs)
        for (k, _), lay in zip(op.outs, op.out_layouts):
            layout_of[k] = lay
    return materialized


def _charge(ops: list[_Op], materialized: set[int], profile: DeviceProfile, n_nodes: int,
            by_class: dict[str, float] | None = None) -> list[float]:
    """Milliseconds per node, fusing memory-bound ops the way Inductor does.

    Inductor fuses chains of pointwise ops, reductions, casts and concatenations into one kernel: reading the
    output of another memory-bound op costs nothing (it stays in registers), and that output is only written to
    memory when it is materialized (`_materialized`); then its readers read it back. Compute ops read and write
    all their tensors. A memory-bound op pays a kernel launch only when it starts a chain."""
    p = profile
    bw = p.memory_gbs * p.memory_efficiency * 1e9
    fusible = {k for op in ops if not op.efficiency for k, _ in op.outs} - materialized
    read = {k for op in ops for k, _ in op.ins}
    ms = [0.0] * n_nodes
    for op in ops:
        if op.efficiency:
            peak = p.matmul_tflops * 1e12 * (p.attention_efficiency if op.efficiency == "attention"
                                             else p.matmul_efficiency)
            moved = sum(n for _, n in op.ins + op.outs)
            t = max(moved / bw, op.flops / peak) * 1e3 + p.kernel_overhead_us / 1e3
            cls = op.efficiency
        else:
            chained = [k in fusible for k, _ in op.ins]
            moved = sum(n for (k, n), f in zip(op.ins, chained) if not f)
            moved += sum(n for k, n in op.outs if k in materialized or k not in read)
            t = moved / bw * 1e3 + (0.0 if any(chained) else p.kernel_overhead_us / 1e3)
            cls = "memory-bound"
        ms[op.node] += t
        if by_class is not None:
            by_class[cls] = by_class.get(cls, 0.0) + t
    return ms


def _fake(mode: FakeTensorMode, x):
    if isinstance(x, torch.Tensor):
        return mode.from_tensor(x, static_shapes=True)
    if isinstance(x, (torch.SymInt, torch.SymFloat, torch.SymBool)) and x.node.hint is not None:
        # a size Dynamo made dynamic (``dynamic=True``, or a size that changed between calls): costed at the value
        # of the call being compiled, as the plan is
        return x.node.hint
    return x


def _real_scalar(x) -> bool:
    """A real (not fake) 0-d tensor: Dynamo's form of a Python float it does not specialize on (``dynamic=True``
    turns a LayerNorm's ``eps`` into one; peft's LoRA scaling after ``set_adapters``)."""
    return isinstance(x, torch.Tensor) and not isinstance(x, FakeTensor) and x.dim() == 0 and not x.is_meta


_SDPA = {torch.nn.functional.scaled_dot_product_attention, torch._C._nn.scaled_dot_product_attention}


def _sdpa(args, kwargs, recorder: _Recorder) -> tuple[torch.Tensor, int]:
    """Attention as one fused kernel (flash / efficient on the GPU), whatever the tracing device would pick:
    decomposing it on the CPU or meta device would count an S x S score matrix no GPU kernel materializes."""
    q, k, v = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")][len(args):])[:3]
    out = q.new_empty((*q.shape[:-1], v.shape[-1]))
    flops = 2.0 * (q.numel() // q.shape[-1]) * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    recorder.record(flops, "attention", [q, k, v], [out])
    return out, sum(_nbytes(t) for t in (q, k, v, out))


def estimate_costs(gm: fx.GraphModule, example_inputs: Sequence[object], profile: DeviceProfile,
                   weight_inputs: Sequence[int] = (), *, sp_degree: int = 1) -> GraphCosts:
    """Run ``gm`` once on fake copies of ``example_inputs`` and estimate every node (see the module docstring).

    ``weight_inputs`` are input positions whose tensors are weights (not counted as activations). With
    ``sp_degree`` N > 1 the graph is the full sequence and N ranks share it Ulysses-style: each node costs 1/N,
    and each attention waits for four all-to-alls (q, k, v in, output back) of (N-1)/N of its per-rank bytes over
    ``profile.link_gbs``."""
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((index[u] for u in n.users), default=index[n]) for n in nodes}
    # A shape env lets data-dependent scalars through (``.item()`` of a 0-d input: Dynamo passes changed Python
    # floats, e.g. peft's LoRA scaling after set_adapters, that way); without one the cost pass would fail the compile.
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    mode = FakeTensorMode(allow_non_fake_inputs=True, shape_env=ShapeEnv())
    fakes = [_fake(mode, x) for x in example_inputs]
    recorder = _Recorder()
    placeholders = {n: i for i, n in enumerate(gm.graph.find_nodes(op="placeholder"))}
    # read here: under the fake mode ``.item()`` of a real tensor gives an unbacked symbol too
    scalars = {i: x.item() for i, x in enumerate(example_inputs) if _real_scalar(x)}
    weights = set(weight_inputs)
    collective_ms = [0.0] * len(nodes)

    collectives: list[Collective] = []
    launched: dict[fx.Node, tuple[str, int, int]] = {}   # launch node -> (kind, bytes, group size)

    class Interp(fx.Interpreter):
        def run_node(self, n):
            recorder.node = index[n]
            if n.op == "call_method" and n.target == "item" and placeholders.get(n.args[0]) in scalars:
                # the value itself, not an unbacked symbol: an op that branches on it (layer_norm's eps) would
                # otherwise fail the cost pass, and with it the compile
                return scalars[placeholders[n.args[0]]]
            name = str(n.target) if n.op == "call_function" else ""
            role = collective_role(n)
            if role in ("launch", "wait"):
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                kind = name.split(".")[1]
                if role == "wait":
                    src = n.args[0]
                    if src in launched:
                        k, nbytes, size = launched.pop(src)
                        ms = _collective_ms(k, nbytes, size, profile)
                        collective_ms[index[n]] += ms
                        collectives.append(Collective(k, index[src], index[n], nbytes, size, ms))
                else:
                    launched[n] = (kind, _nbytes(args[0]), _group_size(kind, args, kwargs))
                return super().run_node(n)
            if role == "sync":
                # cfcompile.elastic's collectives over a logical group: synchronous, the node is launch and wait
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                kind = _ELASTIC_KINDS[name.split(".")[1]]
                nbytes, size = _nbytes(args[0]), args[1].shape[0]  # args[1]: the ranks tensor
                ms = _collective_ms(kind, nbytes, size, profile)
                collective_ms[index[n]] += ms
                collectives.append(Collective(kind, index[n], index[n], nbytes, size, ms))
                return super().run_node(n)
            if n.op == "call_function" and n.target in _SDPA:
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                out, moved = _sdpa(args, kwargs, recorder)
                if sp_degree > 1:
                    if not profile.link_gbs > 0:
                        raise ValueError(f"device profile {profile.name} has no link_gbs: cannot estimate the "
                                         f"all-to-alls of sequence parallelism; give a profile with link_gbs")
                    per_rank = moved / sp_degree * (sp_degree - 1) / sp_degree
                    collective_ms[index[n]] = per_rank / (profile.link_gbs * 1e9) * 1e3 \
                        + 4 * profile.link_latency_us / 1e3
                    # modelled, not in the graph: one window around the attention for its four all-to-alls
                    collectives.append(Collective("all_to_all_single", index[n], index[n], int(moved / sp_degree),
                                                  sp_degree, collective_ms[index[n]]))
                return out
            with recorder:
                return super().run_node(n)

    # Activation liveness: a storage is alive from the node that makes it to the last reader of any node holding
    # it (views share their base's storage, so bytes are counted once per storage). Inductor's generated code
    # reuses a dead buffer for the next allocation of the same dtype and size instead of freeing it, so a buffer
    # stays allocated from its first use to the death of the last tensor placed in it: `_pooled_live_bytes`.
    born: list[tuple[int, int, str, int]] = []     # (node, storage key, dtype, bytes), in allocation order
    end_of: dict[int, int] = {}
    held: list[int] = [0] * len(nodes)            # inputs: the caller holds them for the whole call
    interp = Interp(gm)
    inputs = iter(fakes)
    outputs: set[int] = set()
    with mode:
        for n in nodes:
            if n.op == "output":
                args, kwargs = interp.fetch_args_kwargs_from_env(n)
                outputs = {_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
                break
            val = next(inputs) if n.op == "placeholder" else interp.run_node(n)
            interp.env[n] = val
            if n.op == "placeholder" and placeholders[n] in weights:
                continue
            for t in tree_flatten(val)[0]:
                if not isinstance(t, torch.Tensor):
                    continue
                key = _key(t)
                if n.op == "placeholder":
                    if key not in end_of:
                        end_of[key] = len(nodes)
                        held[index[n]] += _storage_bytes(t)
                    continue
                if key not in end_of:
                    born.append((index[n], key, str(t.dtype), _storage_bytes(t)))
                end_of[key] = max(end_of.get(key, -1), last_use[n])
    for k in outputs:                              # the graph's outputs outlive it
        if k in end_of:
            end_of[k] = len(nodes)
    # Every node's output counts, also those Inductor fuses away: on the H200 this over-estimates the streamed peak
    # at resident fraction 0 by 14% (Wan) and 22% (Flux, 4096 tokens) since release_ stopped forcing fused outputs
    # into memory, while leaving out the fused outputs (`_materialized`) under-estimated Wan's by half (before that
    # fix; benchmarks/RESULTS.md): high is the side a memory budget can live with.
    live_bytes = [b // sp_degree for b in _pooled_live_bytes(born, end_of, held, len(nodes))]
    by_class: dict[str, float] = {}
    compute = _charge(recorder.ops, _materialized(recorder.ops, outputs), profile, len(nodes), by_class)
    node_ms = [c / sp_degree + coll for c, coll in zip(compute, collective_ms)]
    flops = sum(op.flops for op in recorder.ops)
    return GraphCosts(profile.name, tuple(node_ms), tuple(live_bytes), flops, tuple(collective_ms),
                      tuple(collectives), tuple((k, v / sp_degree) for k, v in sorted(by_class.items())))


_ELASTIC = "cfcompile_elastic."


def collective_role(node: fx.Node) -> str | None:
    """How ``node`` takes part in a collective: ``"launch"`` (a functional collective), ``"wait"`` (its
    ``wait_tensor``), ``"sync"`` (a ``cfcompile_elastic`` collective over a logical group: launch and wait in one),
    else None. The one place collectives are recognised: the cost model and the pass both ask it."""
    name = str(node.target) if node.op == "call_function" else ""
    if name.startswith(_ELASTIC):
        return "sync"
    if name.startswith("_c10d_functional."):
        return "wait" if name.startswith("_c10d_functional.wait_tensor") else "launch"
    return None


def collective_waits(graph: fx.Graph) -> list[fx.Node]:
    """The node where each collective of ``graph`` is waited for, in launch order: a functional collective's
    ``wait_tensor``, a synchronous ``cfcompile_elastic`` collective itself (the cost model counts it the same way:
    launch == wait)."""
    out = []
    for n in graph.nodes:
        role = collective_role(n)
        if role == "sync":
            out.append(n)
        elif role == "launch":
            w = next((u for u in n.users if collective_role(u) == "wait"), None)
            if w is not None:
                out.append(w)
    return out
# op name -> the functional collective whose cost model it shares
_ELASTIC_KINDS = {"all_to_all_single": "all_to_all_single", "all_gather": "all_gather_into_tensor"}


def _group_size(kind: str, args, kwargs) -> int:
    if kind == "all_to_all_single" and isinstance(args[1], (list, tuple)) and args[1]:
        return len(args[1])
    if kind in ("all_gather_into_tensor", "reduce_scatter_tensor"):
        return int(args[-2] if kind == "all_gather_into_tensor" else args[2])
    try:  # all_reduce, or an all-to-all without split sizes: ask the process group
        from torch.distributed.distributed_c10d import _resolve_process_group

        return _resolve_process_group(args[-1]).size()
    except Exception:  # noqa: BLE001 - no process group here (planning): assume two ranks
        return 2


def _collective_ms(kind: str, nbytes: int, size: int, profile: DeviceProfile) -> float:
    """Bus-bandwidth model: each rank moves (N-1)/N of its bytes (twice for an all-reduce) over the link."""
    if size <= 1:
        return 0.0
    if not profile.link_gbs > 0:
        raise ValueError(f"device profile {profile.name} has no link_gbs: cannot estimate the {kind} of this graph; "
                         f"give a profile with link_gbs (GPU-to-GPU bandwidth, GB/s)")
    moved = nbytes * (size - 1) / size * (2 if kind == "all_reduce" else 1)
    if kind == "all_gather_into_tensor":
        moved = nbytes * (size - 1)
    return moved / (profile.link_gbs * 1e9) * 1e3 + profile.link_latency_us / 1e3


def _pooled_live_bytes(born: list[tuple[int, int, str, int]], end_of: dict[int, int], held: list[int],
                       n_nodes: int) -> list[int]:
    """Activation bytes after each node when dead buffers are reused as Inductor's wrapper code does: a buffer
    whose tensor is dead is kept for the next allocation of the same dtype and byte size (the most recently freed
    first, `ReuseLine`) and freed only if nothing reuses it. ``born``: (node, storage, dtype, bytes) in allocation
    order; ``end_of``: the node after which each storage is dead; ``held``: bytes the caller holds from each node
    on (the inputs)."""
    free: dict[tuple[str, int], list[int]] = {}      # (dtype, bytes) -> buffers free for reuse
    dying: dict[int, list[tuple[int, tuple[str, int]]]] = {}
    start: list[int] = []
    end: list[int] = []
    size: list[int] = []
    j = 0
    for i in range(n_nodes):
        while j < len(born) and born[j][0] == i:
            _, key, dtype, nbytes = born[j]
            j += 1
            pool = free.get((dtype, nbytes))
            if pool:
                buf = pool.pop()
            else:
                buf = len(size)
                start.append(i)
                end.append(i)
                size.append(nbytes)
            end[buf] = max(end[buf], end_of.get(key, i))
            dying.setdefault(end_of.get(key, i), []).append((buf, (dtype, nbytes)))
        for buf, k in dying.pop(i, []):
            free.setdefault(k, []).append(buf)
    delta = [0] * (n_nodes + 1)
    for s, e, n in zip(start, end, size):
        delta[s] += n
        delta[min(e, n_nodes - 1) + 1] -= n
    out, live, inputs = [], 0, 0
    for i in range(n_nodes):
        live += delta[i]
        inputs += held[i]
        out.append(live + inputs)
    return out


def _storage_bytes(t: torch.Tensor) -> int:
    try:
        return int(t.untyped_storage().nbytes())
    except (RuntimeError, TypeError, NotImplementedError):
        return _nbytes(t)
