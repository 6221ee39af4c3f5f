"""Elastic serving, layer one: collectives over *logical* GPU groups without new communicators.

A :class:`LogicalGroup` is an ordered tuple of global ranks held on the host; the collectives here run over the
already-initialised world process group with point-to-point ops in a fixed pairwise order, so forming, changing
or dropping a group costs no communicator setup (see ``collectives.py`` for why overlapping groups cannot
deadlock). Ranks outside a group take no part.
"""

from .collectives import all_gather, all_to_all, barrier, recv, send
from .groups import LogicalGroup, form_group

__all__ = ["LogicalGroup", "form_group", "all_to_all", "all_gather", "send", "recv", "barrier"]
