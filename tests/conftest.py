import pytest
import torch
import torch._dynamo


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch.manual_seed(0)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    # graphs split by a graph break outlive the reset (Dynamo keeps their guards): give their memory back so that
    # the next test starts with an empty device
    from cfcompile.compiler.backend import release_graphs

    release_graphs()
