"""Logical groups: an ordered tuple of global ranks, host-side state only.

Forming a group creates no process group and no communicator (``dist.new_group`` / ``split_group`` cost a
rendezvous and, on NCCL, device memory per communicator; an elastic scheduler re-forms groups per request).
A member's position in ``ranks`` is its group rank: ``LogicalGroup((2, 0, 3)).rank_in_group(0) == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist


@dataclass(frozen=True)
class LogicalGroup:
    """An ordered set of global ranks; validated on construction, checked against the world size at use."""

    ranks: tuple[int, ...]
    """Global ranks, distinct and non-negative; position in the tuple = group rank."""

    def __post_init__(self):
        ranks = self.ranks
        if isinstance(ranks, (list, range)):
            ranks = tuple(ranks)
            object.__setattr__(self, "ranks", ranks)
        if not isinstance(ranks, tuple):
            raise TypeError(f"LogicalGroup: ranks must be a tuple of global ranks, got {type(ranks).__name__} "
                            f"{ranks!r}; pass e.g. LogicalGroup((0, 1))")
        if not ranks:
            raise ValueError("LogicalGroup: ranks is empty; a group needs at least one global rank, "
                             "e.g. LogicalGroup((0,))")
        bad = [r for r in ranks if isinstance(r, bool) or not isinstance(r, int)]
        if bad:
            raise TypeError(f"LogicalGroup: ranks must be ints, got {bad!r} in {ranks!r}")
        neg = [r for r in ranks if r < 0]
        if neg:
            raise ValueError(f"LogicalGroup: ranks must be non-negative global ranks, got {neg} in {ranks}")
        dup = sorted({r for r in ranks if ranks.count(r) > 1})
        if dup:
            raise ValueError(f"LogicalGroup: ranks must be distinct, {dup} appear more than once in {ranks}; "
                             "list each global rank once")

    @property
    def size(self) -> int:
        return len(self.ranks)

    def rank_in_group(self, global_rank: int) -> int:
        """Position of ``global_rank`` in the group (its group rank); ValueError for a non-member."""
        try:
            return self.ranks.index(global_rank)
        except ValueError:
            raise ValueError(f"LogicalGroup: global rank {global_rank} is not a member of {self.ranks}") from None

    def __contains__(self, global_rank: object) -> bool:
        return global_rank in self.ranks

    def check_world(self, world_size: int) -> "LogicalGroup":
        """Raise if a member is outside ``range(world_size)``; return self."""
        out = [r for r in self.ranks if r >= world_size]
        if out:
            raise ValueError(f"LogicalGroup {self.ranks}: ranks {out} are not in the world of {world_size} ranks "
                             f"(valid: 0..{world_size - 1})")
        return self


def form_group(ranks, world_size: int | None = None) -> LogicalGroup:
    """Validate ``ranks`` (against ``world_size``, default the initialised world's) and return the group.

    Host-side only: no communication, so it is cheap enough to call per request (benchmarks time this).
    """
    group = LogicalGroup(tuple(ranks))
    if world_size is None:
        if not dist.is_initialized():
            raise RuntimeError("form_group: torch.distributed is not initialised; call "
                               "dist.init_process_group(...) first or pass world_size=")
        world_size = dist.get_world_size()
    return group.check_world(world_size)
