"""Call-time binding (`cfcompile.runtime.binding`): one compiled graph serves every block of the same structure, and
weights changed after compiling are seen by the next call. Each case: compiled output == eager output of the module
as it is at that call, on repeated calls."""

import gc
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cfcompile
from cfcompile.compiler.backend import compiled_graphs
from cfcompile.offload import lookup
from cfcompile.runtime.arena import ARENAS, RESIDENTS
from toy import Block, toy

OPTS = {"chunk_size": 4096}


@pytest.fixture(autouse=True)
def _no_graphs_of_earlier_tests():
    gc.collect()   # graphs of earlier tests live in reference cycles until collected


def same(fn, m, x, calls=2):
    with torch.no_grad():
        ref = m(x)
        for _ in range(calls):
            torch.testing.assert_close(fn(x), ref, rtol=1e-5, atol=1e-5)


def offloaded(**kw):
    m, x = toy(**kw)
    cfcompile.offload(m, "cpu")
    return m, x


@pytest.mark.parametrize("rf", [0.0, 0.5])
def test_each_block_compiled_on_its_own_runs_its_own_weights(rf):
    m, x = offloaded()
    for b in m.blocks:
        b.compile(backend="chunkflow", options={**OPTS, "resident_fraction": rf})
    same(m, m, x, calls=3)
    graphs = compiled_graphs()
    assert len(graphs) == 1, "Dynamo runs one graph for the four blocks"
    if rf:   # each block keeps its own resident chunks
        assert len(set(graphs[0].runtime.held["residents"])) == 4
        assert RESIDENTS.bytes() == 4 * graphs[0].plan.total_resident_bytes


def test_a_one_block_graph_double_buffers_across_calls():
    """A graph that holds one block has nothing of its own to hide its copy behind: the next block's copy goes to a
    second arena region at the start of the call, and the two regions swap roles every call."""
    from torch._inductor.utils import run_and_get_code

    m, x = offloaded()
    for b in m.blocks:
        b.compile(backend="chunkflow", options=OPTS)
    with torch.no_grad():
        _, code = run_and_get_code(m, x)
    same(m, m, x, calls=3)
    g = compiled_graphs()[0]
    (group,) = g.plan.streamed
    assert group.next_arena_offset >= 0 and group.next_arena_offset != group.arena_offset
    lines = [l.strip() for l in code[0].splitlines() if "torch.ops.cfcompile." in l]
    # this call's copy (only if the previous call did not make it), the next block's copy, then the wait
    assert [l.split("(")[0].rsplit(".", 2)[1] for l in lines[:3]] == ["prefetch_", "prefetch_", "wait_"]
    assert lines[0].rstrip(")").endswith("2") and lines[1].rstrip(")").endswith("1")
    # the regions swap: consecutive calls read different slots
    rt = g.runtime
    reads = {k[2]: v[1][0].data_ptr() for k, v in rt.bound.items()}
    assert set(reads) == {0, 1} and reads[0] != reads[1]


class OrderedBlock(Block):
    """A block whose layers are registered in either order: a swapped one has its weights at other offsets of its
    host group (not shifted together), so the graph traced on the first block needs another plan for it."""

    def __init__(self, d: int, swapped: bool):
        if not swapped:
            super().__init__(d)
            return
        nn.Module.__init__(self)
        self.ff2 = nn.Linear(4 * d, d)
        self.ff1 = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(d, d)
        self.qkv = nn.Linear(d, 3 * d)
        self.norm = nn.LayerNorm(d)


def test_a_block_laid_out_differently_gets_its_own_plan():
    m, x = toy()
    m.blocks = nn.ModuleList(OrderedBlock(64, swapped=i % 2 == 1) for i in range(4)).eval()
    cfcompile.offload(m, "cpu")
    for b in m.blocks:
        b.compile(backend="chunkflow", options={**OPTS, "resident_fraction": 0.5})
    same(m, m, x, calls=3)
    graphs = compiled_graphs()
    assert len(graphs) == 1 and len(graphs[0].variants) == 1, "a variant for the swapped layout"


def test_blocks_whose_resident_chunks_do_not_fit_the_budget_stream():
    m, x = offloaded()
    block = sum(p.numel() * 4 for p in m.blocks[0].parameters())
    # room for about two blocks' worth of resident chunks: the first blocks keep theirs, the rest stream
    for b in m.blocks:
        b.compile(backend="chunkflow", options={"chunk_size": 4096, "memory_budget": int(2.6 * block)})
    same(m, m, x, calls=3)
    state = compiled_graphs()[0].state
    assert state.plan.total_resident_bytes > 0
    assert state.lean is not None and state.lean.plan.total_resident_bytes == 0
    assert 0 < len(state.rt.bound) < 4 and state.rt.no_room
    # the lean variant is planned within the model's budget: the room kept for its arena is its arena, and what
    # is held (shared arena, every block's resident chunks, activations) stays within the budget
    assert dict(state.lean.plan.arena_bytes) == state.rt.lean_arena
    budget = state.config.memory_budget
    assert state.lean.rt.budget is budget
    held = ARENAS.bytes() + RESIDENTS.bytes() + max(g.rt.activation_bytes for g in (state, state.lean))
    assert budget.usage()["peak_bytes"] == held <= budget.bytes


class BreakBlock(Block):
    def forward(self, x):
        q, k, v = self.qkv(self.norm(x)).chunk(3, -1)
        x = x + self.proj(self.attend(q, k, v))
        torch._dynamo.graph_break()
        return x + self.ff2(F.gelu(self.ff1(x)))


def test_a_graph_break_inside_every_block():
    m, x = toy()
    m.blocks = nn.ModuleList(BreakBlock(64) for _ in range(4)).eval()
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={**OPTS, "resident_fraction": 0.5})
    same(fn, m, x, calls=3)


class MoE(nn.Module):
    """Top-1 routing with a data-dependent branch per expert: a graph break at every expert call, and one graph
    for all experts of all blocks (their weights at other offsets of the block's host group)."""

    def __init__(self, d=64, experts=4):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.router = nn.Linear(d, experts)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
                                     for _ in range(experts))

    def forward(self, x):
        h = self.norm(x)
        choice = self.router(h).argmax(-1)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            mask = choice == e
            if mask.any():          # data-dependent: graph break
                out[mask] = expert(h[mask])
        return x + out


def test_moe_experts_through_one_graph():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 64), MoE(), MoE(), nn.Linear(64, 16)).eval()
    x = torch.randn(2, 32, 16)
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={**OPTS, "resident_fraction": 0.3})
    same(fn, m, x, calls=3)


class SharedFirst(nn.Module):
    """Blocks that each read a projection shared by all of them first, then their own weights; a graph break in
    every block: one graph whose weight sets share their first input (the binding's cache is keyed by it)."""

    def __init__(self, shared: nn.Linear, d=64):
        super().__init__()
        self.shared, self.own = shared, nn.Linear(d, d)

    def forward(self, x):
        x = x + self.own(torch.tanh(self.shared(x)))
        torch._dynamo.graph_break()
        return x * 0.5


def test_weight_sets_sharing_their_first_weight_each_stay_on_the_fast_path(monkeypatch):
    from cfcompile.runtime.binding import Binder
    torch.manual_seed(0)
    shared = nn.Linear(64, 64)
    m, x = nn.Sequential(*(SharedFirst(shared) for _ in range(3))).eval(), torch.randn(2, 8, 64)
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={**OPTS, "resident_fraction": 0.5})
    same(fn, m, x, calls=2)
    slow = []
    bind = Binder._bind
    monkeypatch.setattr(Binder, "_bind", lambda self, args: slow.append(1) or bind(self, args))
    same(fn, m, x, calls=3)
    assert slow == [], "a weight set was bound again although nothing changed"
    with torch.no_grad():
        m[1].own.weight.mul_(0.5)                  # one block changes: only its entry is bound again
    same(fn, m, x, calls=2)
    assert len(slow) == 1
    with torch.no_grad():
        shared.weight.mul_(0.5)                    # the shared weight changes: every block's entry
    same(fn, m, x, calls=2)
    assert len(slow) == 1 + len(m)


@pytest.mark.parametrize("rf", [0.5])   # resident copies and wrap-around copies both go stale
def test_weight_changes_after_compile(rf):
    m, x = offloaded()
    fn = torch.compile(m, backend="chunkflow", options={**OPTS, "resident_fraction": rf})
    same(fn, m, x)
    w = m.blocks[0].qkv.weight
    d = torch.randn_like(w) * 0.1
    w.data += d                                    # peft's fuse_lora
    same(fn, m, x)
    w.data -= d                                    # unfuse
    same(fn, m, x)
    w.data = w.data + d                            # a new tensor: copied into the store
    assert lookup(w) is not None
    same(fn, m, x)
    with torch.no_grad():
        m.blocks[2].ff1.weight.mul_(1.5)           # in place
    same(fn, m, x)
    sd = {k: v + 0.01 for k, v in m.state_dict().items()}
    m.load_state_dict(sd)                          # copy_ into the host bytes
    same(fn, m, x)
    assert all(lookup(p) is not None for p in m.parameters())


def test_parameters_replaced_by_new_objects_are_taken_back():
    m, x = offloaded()
    fn = torch.compile(m, backend="chunkflow", options={**OPTS, "resident_fraction": 0.5})
    same(fn, m, x)
    sd = {k: v * 0.9 for k, v in m.state_dict().items()}
    # diffusers' loaders set `type(old)(new_value)` on the module: the next compiled call finds it outside the store
    # and copies it into its slot (the block's other weights say where)
    old = m.blocks[1].qkv.weight
    m.blocks[1].qkv.weight = type(old)(old.detach() * 1.1, requires_grad=old.requires_grad)
    same(fn, m, x)
    assert lookup(m.blocks[1].qkv.weight) is not None
    # a plain nn.Parameter: Dynamo compiles again (another type) and that graph reads it where it is: still equal
    m.blocks[2].ff1.weight = nn.Parameter(m.blocks[2].ff1.weight.detach() * 0.8)
    same(fn, m, x)
    # a whole block replaced by objects of the store's type: nothing says where it belongs at call time
    for name, p in m.blocks[3].named_parameters():
        m.blocks[3].get_submodule(name.rsplit(".", 1)[0]).register_parameter(
            name.rsplit(".", 1)[1], type(old)(p.detach() * 1.2, requires_grad=p.requires_grad))
    with pytest.raises(Exception, match="offload\\(model\\) again"):
        with torch.no_grad():
            fn(x)
    cfcompile.offload(m, "cpu")    # takes every replaced parameter back into the store
    assert all(lookup(p) is not None for p in m.parameters())
    same(fn, m, x)
    m.load_state_dict(sd, assign=True)
    cfcompile.offload(m, "cpu")
    assert all(lookup(p) is not None for p in m.parameters())
    same(fn, m, x)


@pytest.mark.parametrize("rf", [0.0, 0.5])
def test_changes_the_fast_path_must_not_miss(rf):
    """The per-call check reads the parameter objects and one version counter per group (`offload._point`): what
    would slip past it if it were any weaker."""
    import weakref
    m, x = toy()
    held = weakref.ref(m.blocks[1].proj.weight)    # a weak reference: this weight cannot share its group's counter
    cfcompile.offload(m, "cpu")
    assert held() is m.blocks[1].proj.weight and lookup(held()) is not None
    fn = torch.compile(m, backend="chunkflow", options={**OPTS, "resident_fraction": rf})
    same(fn, m, x)
    with torch.no_grad():
        m.blocks[1].proj.weight.mul_(0.5)          # the weight with a counter of its own
    same(fn, m, x)
    w = m.blocks[2].qkv.weight
    with torch.no_grad():
        w.set_(w.detach().clone() * 2)             # the same object, its storage elsewhere: taken back
    same(fn, m, x)
    assert lookup(w) is not None
    # (load_state_dict through swap_tensors, torch.__future__'s swap_module_params_on_conversion, fails for any
    # compiled model: Dynamo holds weak references to the parameters, and swap_tensors refuses those)
    cfcompile.restore(m)                           # the same objects, out of the store and back into a new one
    with torch.no_grad():
        m.blocks[0].ff2.weight.add_(1.0)
    cfcompile.offload(m, "cpu")
    same(fn, m, x)
    assert all(lookup(p) is not None for p in m.parameters())


def test_casts_and_moves_are_refused_and_change_nothing():
    m, x = offloaded()
    store = cfcompile.store_of(m)
    before = {n: (p.dtype, p.data_ptr()) for n, p in m.named_parameters()}
    for cast in (lambda: m.to(torch.float64), lambda: m.half(), lambda: m.blocks[1].double(),
                 lambda: m.to("meta")):
        with pytest.raises(ValueError, match="restore"):
            cast()
        assert {n: (p.dtype, p.data_ptr()) for n, p in m.named_parameters()} == before
        assert all(b.dtype == torch.float32 for b in m.buffers())
    with pytest.raises(ValueError, match="restore"):
        m.head.weight.data = m.head.weight.data.double()
    m.to("cpu")                                    # where it already is: allowed, changes nothing
    m.to(torch.float32)
    assert cfcompile.store_of(m) is store and all(lookup(p) is not None for p in m.parameters())
    cfcompile.restore(m)                           # then casts work as usual
    m.to(torch.float64)
    assert all(type(p) is nn.Parameter and p.dtype == torch.float64 for p in m.parameters())


def test_threads_share_one_compiled_model():
    m, x = offloaded()
    fn = torch.compile(m, backend="chunkflow", options={**OPTS, "resident_fraction": 0.5})
    xs = [torch.randn(2, 32, 16, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with torch.no_grad():
        refs = [m(xi) for xi in xs]
        fn(xs[0])
    wrong = []

    def worker(i):
        with torch.no_grad():
            for _ in range(100):
                if not torch.allclose(fn(xs[i]), refs[i], rtol=1e-5, atol=1e-5):
                    wrong.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_a_weight_whose_class_changes_is_checked_on_every_call(monkeypatch):
    """The fast path checks the epoch, not every weight's class: a class change bumps the epoch, and a weight that
    is no longer a HostParameter (its ``data`` setter could take it out of the store unseen) is bound on every call."""
    from cfcompile.runtime.binding import Binder
    m, x = offloaded()
    fn = torch.compile(m, backend="chunkflow", options={**OPTS, "resident_fraction": 0.5})
    same(fn, m, x)
    slow = []
    bind = Binder._bind
    monkeypatch.setattr(Binder, "_bind", lambda self, args: slow.append(1) or bind(self, args))
    same(fn, m, x)
    assert slow == []
    w = m.blocks[2].qkv.weight
    w.__class__ = nn.Parameter                     # still in the store, but an ordinary parameter now
    same(fn, m, x, calls=2)
    assert len(slow) == 2, "a weight that changed class must be bound again on every call"
    w.data = w.detach().clone() * 2                # Parameter's own setter: out of the store, no counter bumped
    same(fn, m, x)
    assert lookup(w) is not None and type(w).__name__ == "HostParameter"   # taken back on the call
    slow.clear()
    same(fn, m, x)
    assert slow == [], "back in the store as a HostParameter: the fast path again"
