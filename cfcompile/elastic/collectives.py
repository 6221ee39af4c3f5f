"""Collectives over a :class:`LogicalGroup` on the world process group, by pairwise point-to-point steps.

Schedule (n members, member i, steps s = 1..n-1)::

    step s:   batch_isend_irecv([isend(chunk for (i+s)%n -> (i+s)%n), irecv(from (i-s)%n)]);  wait both
    (the chunk for i itself is a local copy)

Why it cannot deadlock:

1. Inside one collective the steps pair up exactly: at step s member i sends to j = (i+s)%n, and j at the same
   step receives from (j-s)%n = i. Send and receive of a step are posted together, without blocking (NCCL: one
   ``ncclGroupStart/End``), and waited together, so no member blocks on a send before posting its receive. By
   induction on s every member finishes step s once all members have entered the collective.
2. Between two ranks a collective sends at most one message each way (only at steps (j-i)%n and (i-j)%n), and
   point-to-point messages between a pair are matched in the order they are posted (NCCL: one stream per pair
   of the world communicator; gloo: per peer and tag, FIFO).
3. So with several groups, overlapping or not, issued back to back: provided every rank issues its collectives
   in an order consistent with one global order (the usual SPMD rule, e.g. every rank walks the same list of
   (group, op) and skips the ones it is not in), take the earliest collective in that order that some member has
   not finished. All its members have finished every earlier collective (by minimality), so they all enter it;
   by (2) their messages match the right collective, and by (1) it completes. Hence all collectives complete.
   Non-members are never waited on: nothing is posted to or from them.

Ranks outside the group return ``None`` at once; the only torch.distributed call they make is ``get_rank()``
(host-side). NCCL: set the device first and initialise the world eagerly (``init_process_group(device_id=...)``)
or run one world collective first, since a batched P2P must not be the first NCCL call on a lazily created
communicator (see ``torch.distributed.batch_isend_irecv``).

``all_to_all`` and ``all_gather`` validate and then call the custom ops ``cfcompile_elastic::all_to_all_single`` /
``::all_gather``, so torch.compile traces them without a graph break. The ops take the group as a 1-D int64 CPU
tensor of global ranks, read on the host when the op runs: under compile it is a graph input, not a constant.
``group`` may be given either way:

* a :class:`LogicalGroup`: checked on the host, non-members get None and issue nothing; under compile its ranks
  are constants of the graph (Dynamo guards on them), so another group is another graph;
* a ranks tensor (e.g. one kept by the caller and refilled in place): a run-time value, so a compiled graph runs
  on any group of that size without recompiling; only members may call (the op raises otherwise) and the op,
  not the wrapper, checks the values (distinct, in the world, this rank among them).

Under compile the SPMD rule above means: members of a group must run the same graph (same order of collectives).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.distributed as dist

from .groups import LogicalGroup

log = logging.getLogger(__name__)


def _me(group: LogicalGroup) -> int | None:
    """This process's group rank, or None if it is not a member (no communication)."""
    if not isinstance(group, LogicalGroup):
        raise TypeError(f"expected a LogicalGroup, got {type(group).__name__}; build one with "
                        "cfcompile.elastic.form_group(ranks)")
    rank = dist.get_rank()
    if rank not in group:
        return None
    group.check_world(dist.get_world_size())
    return group.rank_in_group(rank)


def _check_ranks(ranks: torch.Tensor, op: str) -> None:
    """The metadata of a ranks tensor (its values are read only by the op's eager implementation)."""
    # Each message is one f-string of ints and strings: Dynamo (2.11, fullgraph) cannot fold a nested f-string or a
    # tuple into the message, and then reports "Observed exception" without it.
    if not isinstance(ranks, torch.Tensor):
        raise TypeError(f"{op}: ranks must be a non-empty 1-D int64 CPU tensor of global ranks, got "
                        f"{type(ranks).__name__}; e.g. torch.tensor(group.ranks)")
    if ranks.dtype != torch.int64 or ranks.device.type != "cpu" or ranks.dim() != 1 or not ranks.numel():
        raise TypeError(f"{op}: ranks must be a non-empty 1-D int64 CPU tensor of global ranks (read on the host, "
                        f"no device sync), got a {ranks.dim()}-D {ranks.dtype} tensor of {ranks.numel()} elements "
                        f"on {ranks.device}; e.g. torch.tensor(group.ranks)")


def _ranks(group: LogicalGroup | torch.Tensor, op: str) -> torch.Tensor | None:
    """The ranks tensor the ops take; None for a LogicalGroup this process is not in."""
    if isinstance(group, torch.Tensor):
        _check_ranks(group, op)
        return group
    if _me(group) is None:
        return None
    return torch.tensor(group.ranks, dtype=torch.int64)


def _exchange(group: LogicalGroup, me: int, sends: Sequence[torch.Tensor | None],
              recvs: Sequence[torch.Tensor | None]) -> None:
    """Pairwise schedule: ``sends[j]`` goes to member j, ``recvs[j]`` is filled from member j (None = nothing)."""
    n = group.size
    for s in range(1, n):
        to, frm = (me + s) % n, (me - s) % n
        ops = []
        if sends[to] is not None:
            ops.append(dist.P2POp(dist.isend, sends[to], group.ranks[to]))
        if recvs[frm] is not None:
            ops.append(dist.P2POp(dist.irecv, recvs[frm], group.ranks[frm]))
        if ops:
            for work in dist.batch_isend_irecv(ops):
                work.wait()


def _splits(name: str, splits, total: int, n: int) -> list[int]:
    if splits is None:
        if total % n:
            raise ValueError(f"all_to_all: dim 0 of size {total} does not divide into {n} equal parts; "
                             f"pass {name} for unequal splits")
        return [total // n] * n
    splits = [int(x) for x in splits]
    if len(splits) != n or any(x < 0 for x in splits):
        raise ValueError(f"all_to_all: {name} must be {n} non-negative sizes (one per group member), got {splits}")
    return splits


def all_to_all(input: torch.Tensor, group: LogicalGroup | torch.Tensor,
               output_split_sizes: Sequence[int] | None = None,
               input_split_sizes: Sequence[int] | None = None) -> torch.Tensor | None:
    """``all_to_all_single`` over ``group``: rows ``input_split_sizes[j]`` go to member j; returns the received
    rows concatenated along dim 0 in group-rank order (``output_split_sizes[j]`` from member j). None for
    non-members of a LogicalGroup. Splits must agree across members, as for ``all_to_all_single``.

    ``group``: a LogicalGroup, or a 1-D int64 CPU tensor of global ranks (a run-time value under compile: see the
    module docstring). Traceable: under ``torch.compile`` it is one ``cfcompile_elastic.all_to_all_single`` node.
    """
    ranks = _ranks(group, "all_to_all")
    if ranks is None:
        return None
    n = ranks.shape[0]
    in_splits = _splits("input_split_sizes", input_split_sizes, input.shape[0], n)  # their sum: the op checks
    out_splits = _splits("output_split_sizes", output_split_sizes, input.shape[0], n)
    return all_to_all_single_op(input, ranks, out_splits, in_splits)


def all_gather(input: torch.Tensor, group: LogicalGroup | torch.Tensor, dim: int = 0) -> torch.Tensor | None:
    """Every member's ``input`` (same shape on all) concatenated along ``dim`` in group-rank order; None for
    non-members of a LogicalGroup. ``group`` and tracing as for :func:`all_to_all` (one
    ``cfcompile_elastic.all_gather`` node)."""
    ranks = _ranks(group, "all_gather")
    if ranks is None:
        return None
    if not -input.dim() <= dim < input.dim():
        raise ValueError(f"all_gather: dim {dim} is out of range for a tensor of {input.dim()} dimensions "
                         "(a 0-d tensor: gather x[None])")
    # the schedule gathers along dim 0: move ``dim`` there and back (views; no-ops for dim 0)
    return all_gather_op(input.movedim(dim, 0), ranks).movedim(0, dim)


# --- the collectives as custom ops: opaque to Dynamo and AOTAutograd, so a compiled graph keeps each one as a
# single node (no graph break) and the cost model sees it. Synchronous: the op returns once its exchanges are done
# (on NCCL: once the current stream waits for them), so a graph node is both the launch and the wait. ---------

def _member_of(ranks: torch.Tensor, op: str) -> tuple[LogicalGroup, int]:
    _check_ranks(ranks, op)
    values = ranks.tolist()
    try:
        group = LogicalGroup(tuple(values)).check_world(dist.get_world_size())  # distinct, non-negative, in world
    except ValueError as e:
        raise ValueError(f"{op}: bad ranks {values}: {e}") from None
    rank = dist.get_rank()
    if rank not in group:
        raise ValueError(f"{op}: this rank ({rank}) is not in ranks {values}; only members may call the op "
                         "(cfcompile.elastic.all_to_all / all_gather return None for non-members of a LogicalGroup "
                         "without calling it)")
    return group, group.rank_in_group(rank)


def _check_op_splits(x: torch.Tensor, ranks: torch.Tensor, out_splits: Sequence[int],
                     in_splits: Sequence[int]) -> None:
    n = ranks.shape[0]
    for name, splits in (("output_split_sizes", out_splits), ("input_split_sizes", in_splits)):
        if len(splits) != n:
            raise ValueError(f"all_to_all_single: {name} has {len(splits)} entries for a group of {n} ranks; "
                             "give one size per member")
    if sum(in_splits) != x.shape[0]:
        raise ValueError(f"all_to_all_single: input_split_sizes {list(in_splits)} sum to {sum(in_splits)}, but "
                         f"input has {x.shape[0]} rows along dim 0")


@torch.library.custom_op("cfcompile_elastic::all_to_all_single", mutates_args=())
def all_to_all_single_op(x: torch.Tensor, ranks: torch.Tensor, output_split_sizes: list[int],
                         input_split_sizes: list[int]) -> torch.Tensor:
    """``all_to_all_single`` over the global ``ranks`` (int64 CPU, this rank among them), by the pairwise
    schedule."""
    group, me = _member_of(ranks, "all_to_all_single")
    _check_op_splits(x, ranks, output_split_sizes, input_split_sizes)
    if any(s < 0 for s in (*output_split_sizes, *input_split_sizes)):
        raise ValueError(f"all_to_all_single: split sizes must be non-negative, got output {output_split_sizes}, "
                         f"input {input_split_sizes}")
    x = x.contiguous()
    out = x.new_empty((sum(output_split_sizes), *x.shape[1:]))
    ins, outs = x.split(input_split_sizes), out.split(output_split_sizes)
    outs[me].copy_(ins[me])
    _exchange(group, me, [t if t.numel() else None for t in ins], [t if t.numel() else None for t in outs])
    return out


@all_to_all_single_op.register_fake
def _(x, ranks, output_split_sizes, input_split_sizes):
    _check_ranks(ranks, "all_to_all_single")   # metadata only: the values exist at run time
    _check_op_splits(x, ranks, output_split_sizes, input_split_sizes)
    return x.new_empty((sum(output_split_sizes), *x.shape[1:]))


def _a2a_setup(ctx, inputs, output):
    _, ranks, ctx.out_splits, ctx.in_splits = inputs
    ctx.save_for_backward(ranks)   # a tensor: saved, so a compiled backward reads this call's group


def _a2a_backward(ctx, grad):
    # the gradient goes back the way the rows came: the same exchange with the splits swapped
    (ranks,) = ctx.saved_tensors
    return all_to_all_single_op(grad.contiguous(), ranks, ctx.in_splits, ctx.out_splits), None, None, None


all_to_all_single_op.register_autograd(_a2a_backward, setup_context=_a2a_setup)


@torch.library.custom_op("cfcompile_elastic::all_gather", mutates_args=())
def all_gather_op(x: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Every member's ``x`` concatenated along dim 0 in the order of ``ranks`` (int64 CPU, this rank among them)."""
    group, me = _member_of(ranks, "all_gather")
    x = x.contiguous()
    out = x.new_empty((group.size * x.shape[0], *x.shape[1:]))
    outs = out.chunk(group.size) if x.shape[0] else [out] * group.size
    outs[me].copy_(x)
    if x.numel():
        _exchange(group, me, [x] * group.size, list(outs))
    return out


@all_gather_op.register_fake
def _(x, ranks):
    _check_ranks(ranks, "all_gather")
    return x.new_empty((ranks.shape[0] * x.shape[0], *x.shape[1:]))


def _check_peer(peer: int, what: str) -> int:
    world = dist.get_world_size()
    if isinstance(peer, bool) or not isinstance(peer, int) or not 0 <= peer < world:
        raise ValueError(f"{what}: peer must be a global rank in 0..{world - 1}, got {peer!r}")
    if peer == dist.get_rank():
        raise ValueError(f"{what}: peer {peer} is this rank; copy the tensor instead")
    return peer


def send(tensor: torch.Tensor, dst: int) -> None:
    """Send ``tensor`` to global rank ``dst`` (which calls :func:`recv` with the same shape and dtype)."""
    dst = _check_peer(dst, "send")
    for work in dist.batch_isend_irecv([dist.P2POp(dist.isend, tensor.contiguous(), dst)]):
        work.wait()


def recv(out: torch.Tensor, src: int) -> torch.Tensor:
    """Receive from global rank ``src`` into ``out`` (contiguous; shape and dtype as sent); return ``out``."""
    src = _check_peer(src, "recv")
    if not out.is_contiguous():
        raise ValueError("recv: out must be contiguous; allocate it with torch.empty(shape, dtype=..., device=...)")
    for work in dist.batch_isend_irecv([dist.P2POp(dist.irecv, out, src)]):
        work.wait()
    return out


def _default_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier(group: LogicalGroup, device: torch.device | str | None = None) -> None:
    """Return once every member has entered; a one-element exchange with every other member. No-op for
    non-members. ``device`` defaults to the backend's (CUDA current device on NCCL, else CPU)."""
    me = _me(group)
    if me is None or group.size == 1:
        return
    token = torch.zeros(1, device=device or _default_device())
    bufs = [torch.empty_like(token) for _ in range(group.size)]
    _exchange(group, me, [token] * group.size, bufs)
