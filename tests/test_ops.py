import torch

import cfcompile.runtime  # noqa: F401


def test_prefetch_copies_chunks_into_the_slot():
    slot, src = torch.zeros(16), torch.arange(32.0)
    torch.ops.cfcompile.prefetch_(slot, [], [], src, [4, 20], [0, 8], [8, 4], 0)
    torch.ops.cfcompile.wait_(slot, 0)
    assert torch.equal(slot[:8], src[4:12]) and torch.equal(slot[8:12], src[20:24]) and not slot[12:].any()


def test_opcheck():
    torch.library.opcheck(torch.ops.cfcompile.prefetch_.default,
                          (torch.zeros(16), [torch.zeros(4)], [torch.ones(2)], torch.arange(32.0), [0], [0], [8], 3))
    torch.library.opcheck(torch.ops.cfcompile.wait_.default, (torch.zeros(4), 3))
    torch.library.opcheck(torch.ops.cfcompile.release_.default, (torch.zeros(4),))
