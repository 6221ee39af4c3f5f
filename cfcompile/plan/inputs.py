"""The extra graph inputs the backend appends after the Dynamo inputs: the one definition of their order.

    [ Dynamo inputs | slot per streamed group | host window per streamed group | next call's host window per wrapped
      group | resident slot per group with resident bytes | second region per double-buffered group ]

The rewrite reads them as placeholders at these positions (`compiler.rewrite`), the backend names them
(`compiler.backend`), the runtime hands them over in this order on every call (`runtime.arena.GraphRuntime`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from .ir import Plan


@dataclasses.dataclass(frozen=True)
class InputLayout:
    """Positions of the extra graph inputs (see the module docstring)."""

    slots: tuple[int, ...]          # arena slot of each streamed group, in Plan.streamed order
    hosts: tuple[int, ...]          # host window of each streamed group (of the group bound at the call), same order
    next_hosts: dict[int, int]      # wrapped streamed group j -> host window of the group the next call reads
    residents: dict[str, int]       # group key -> its resident slot
    next_slots: dict[int, int] = dataclasses.field(default_factory=dict)   # double-buffered j -> its other region

    @staticmethod
    def after(first: int, plan: Plan) -> "InputLayout":
        """The layout of ``plan``'s extra inputs when they start at input ``first``."""
        n = len(plan.streamed)
        slots = tuple(range(first, first + n))
        hosts = tuple(range(first + n, first + 2 * n))
        wrapped = [j for j, g in enumerate(plan.streamed) if g.wrap_before is not None]
        nxt = {j: first + 2 * n + i for i, j in enumerate(wrapped)}
        resident = [g.key for g in plan.groups if g.resident_bytes]
        base = first + 2 * n + len(wrapped)
        doubled = [j for j, g in enumerate(plan.streamed) if g.next_arena_offset >= 0]
        after = base + len(resident)
        return InputLayout(slots, hosts, nxt, {k: base + i for i, k in enumerate(resident)},
                           {j: after + i for i, j in enumerate(doubled)})

    @staticmethod
    def pack(slots: Sequence, hosts: Sequence, next_hosts: Sequence, residents: Sequence,
             next_slots: Sequence) -> list:
        """The extra inputs in layout order, each kind in the order `after` numbers it."""
        return [*slots, *hosts, *next_hosts, *residents, *next_slots]

    def names(self) -> list[str]:
        return ([f"cf_slot_{j}" for j in range(len(self.slots))] + [f"cf_host_{j}" for j in range(len(self.hosts))]
                + [f"cf_next_host_{j}" for j in self.next_hosts]
                + [f"cf_resident_{k}" for k in range(len(self.residents))]
                + [f"cf_next_slot_{j}" for j in self.next_slots])
