"""A toy diffusion-transformer-shaped model: embed, a ModuleList of blocks, a head. Compiles in seconds."""

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ff1 = nn.Linear(d, 4 * d)
        self.ff2 = nn.Linear(4 * d, d)

    def attend(self, q, k, v):
        return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]

    def forward(self, x):
        q, k, v = self.qkv(self.norm(x)).chunk(3, -1)
        x = x + self.proj(self.attend(q, k, v))
        return x + self.ff2(F.gelu(self.ff1(x)))


class ToyDiT(nn.Module):
    def __init__(self, d: int = 64, blocks: int = 4, channels: int = 16):
        super().__init__()
        self.embed = nn.Linear(channels, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(blocks))
        self.head = nn.Linear(d, channels)

    def forward(self, x):
        x = self.embed(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def toy(**kw) -> tuple[ToyDiT, torch.Tensor]:
    torch.manual_seed(0)
    return ToyDiT(**kw).eval(), torch.randn(2, 32, kw.get("channels", 16))


class SPBlock(Block):
    """Block with Ulysses-style all-to-alls around attention: functional collectives on a process ``group``, or
    cfcompile.elastic's on a ``LogicalGroup``."""

    def __init__(self, d: int, group):
        super().__init__(d)
        self.group = group

    def attend(self, q, k, v):
        import torch.distributed._functional_collectives as funcol

        from cfcompile.elastic import LogicalGroup, all_to_all

        def a2a(t):
            if isinstance(self.group, LogicalGroup):  # cfcompile.elastic's synchronous custom op
                return all_to_all(t, self.group)
            return funcol.wait_tensor(funcol.all_to_all_single(t.contiguous(), None, None, self.group))

        return a2a(super().attend(a2a(q), a2a(k), a2a(v)))


def sp_toy(group, blocks: int = 4, d: int = 64) -> tuple[ToyDiT, torch.Tensor]:
    torch.manual_seed(0)
    m = ToyDiT(d=d, blocks=blocks)
    m.blocks = nn.ModuleList(SPBlock(d, group) for _ in range(blocks))
    return m.eval(), torch.randn(2, 32, 16)
