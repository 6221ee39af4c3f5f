"""Find the offloaded weights among a Dynamo graph's inputs and where the graph reads them.

Weights are recognised by data pointer against the host store (`cfcompile.offload.lookup`), never by name.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.fx as fx

from ..offload import Group, lookup
from .ir import WeightRead


def find_weight_reads(gm: fx.GraphModule, example_inputs: Sequence[object],
                      locate: Callable[[torch.Tensor], tuple[Group, int] | None] = lookup) -> list[WeightRead]:
    """The offloaded weights among the graph's inputs; ``locate`` maps a tensor to (group, byte offset) or None
    (default: the host store, by data pointer; planning on the meta device passes `offload.planned_layout`'s)."""
    placeholders = list(gm.graph.find_nodes(op="placeholder"))
    if len(placeholders) != len(example_inputs):
        raise AssertionError(f"{len(placeholders)} placeholders but {len(example_inputs)} example inputs")
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    reads = []
    for i, (node, t) in enumerate(zip(placeholders, example_inputs)):
        if not isinstance(t, torch.Tensor) or not node.users:
            continue
        found = locate(t)
        if found is None:
            continue
        group, offset = found
        uses = [order[u] for u in node.users]
        reads.append(WeightRead(i, group, offset, t.numel() * t.element_size(), tuple(t.shape), tuple(t.stride()),
                                min(uses), max(uses)))
    return reads
