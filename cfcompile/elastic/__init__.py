"""Elastic serving, layer one: collectives over *logical* GPU groups without new communicators.

A :class:`LogicalGroup` is an ordered tuple of global ranks held on the host; the collectives here run over the
already-initialised world process group with point-to-point ops in a fixed pairwise order, so forming, changing
or dropping a group costs no communicator setup (see ``collectives.py`` for why overlapping groups cannot
deadlock). Ranks outside a group take no part. ``all_to_all`` and ``all_gather`` are custom ops
(``cfcompile_elastic::*``) that torch.compile keeps as single nodes. :func:`ulysses` runs a diffusers transformer
with Ulysses sequence parallelism over a logical group that can change between calls (compiled: without a
recompile while the group's size stays the same).
"""

from .collectives import all_gather, all_to_all, barrier, recv, send
from .groups import LogicalGroup, form_group
from .ulysses import enable_ulysses, set_ulysses_group, ulysses

__all__ = ["LogicalGroup", "form_group", "all_to_all", "all_gather", "send", "recv", "barrier", "ulysses",
           "set_ulysses_group", "enable_ulysses"]
