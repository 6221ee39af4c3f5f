"""What only a GPU can show: calls of one compiled model on several CUDA streams from several threads, weight
changes seen by regionally compiled blocks with resident copies on the device. Skipped without CUDA; run on the GPU
machines (``python -m pytest tests/test_cuda.py``)."""

import gc
import threading

import pytest
import torch

import cfcompile
from toy import toy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

OPTS = {"chunk_size": 4096}


@pytest.fixture(autouse=True)
def _no_graphs_of_earlier_tests():
    gc.collect()


def _offloaded(**kw):
    m, x = toy(**kw)
    cfcompile.offload(m, "cuda")
    return m, x.cuda()


@pytest.mark.parametrize("rf", [0.0, 0.5])
def test_threads_on_their_own_streams(rf):
    """4 threads x 50 calls, each thread on its own CUDA stream: the calls are serialized on the GPU too (a call
    on another stream waits for the last call's work), so every output equals eager."""
    m, x = _offloaded()
    fn = torch.compile(m, backend="chunkflow", options={**OPTS, "resident_fraction": rf})
    xs = [torch.randn(2, 32, 16, generator=torch.Generator().manual_seed(i)).cuda() for i in range(4)]
    with torch.no_grad():
        refs = [m(xi) for xi in xs]
        fn(xs[0])
    torch.cuda.synchronize()
    wrong, errors = [], []

    def worker(i):
        try:
            stream = torch.cuda.Stream()
            with torch.no_grad(), torch.cuda.stream(stream):
                outs = [fn(xs[i]) for _ in range(50)]
                stream.synchronize()
                wrong.extend(i for o in outs if not torch.allclose(o, refs[i], rtol=1e-4, atol=1e-4))
        except Exception as e:   # an exception in a thread would otherwise pass unseen
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []


def test_regional_blocks_see_weight_changes_on_the_gpu():
    """Each block compiled on its own (one graph for all, bound per call) with half its chunks resident on the
    device: an in-place change of one block's weight refreshes that block's resident copy."""
    m, x = _offloaded()
    for block in m.blocks:
        block.compile(backend="chunkflow", options={**OPTS, "resident_fraction": 0.5})
    with torch.no_grad():
        for _ in range(2):
            torch.testing.assert_close(m(x), _eager(m, x), rtol=1e-4, atol=1e-4)
        w = m.blocks[1].ff1.weight
        w.data += 0.1 * torch.randn_like(w)
        torch.testing.assert_close(m(x), _eager(m, x), rtol=1e-4, atol=1e-4)
        m.load_state_dict({k: v * 0.5 for k, v in m.state_dict().items()})
        torch.testing.assert_close(m(x), _eager(m, x), rtol=1e-4, atol=1e-4)


def _eager(m, x):
    saved = {b: b._compiled_call_impl for b in m.modules() if b._compiled_call_impl is not None}
    try:
        for b in saved:
            b._compiled_call_impl = None
        return m(x)
    finally:
        for b, impl in saved.items():
            b._compiled_call_impl = impl
