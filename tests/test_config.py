import pytest

from cfcompile import ChunkFlowConfig, parse_bytes
from cfcompile.config import DUMP_ENV
from cfcompile.plan.resolve import resolve


@pytest.mark.parametrize("value,expected", [(4096, 4096), ("16MiB", 16 * 2**20), ("1.5 GiB", int(1.5 * 2**30)),
                                            ("512MB", 512 * 10**6), ("256", 256), (2048.0, 2048)])
def test_parse_bytes(value, expected):
    assert parse_bytes(value) == expected


@pytest.mark.parametrize("value", ["16 parsecs", "", "-1MiB", 0, -5, True, [1], 1.5])
def test_parse_bytes_rejects(value):
    with pytest.raises(ValueError, match="value"):
        parse_bytes(value)


def test_defaults_are_valid_and_hashable():
    c = ChunkFlowConfig()
    assert c.chunk_size == "auto" and c.resident_fraction is None and c.prefetch_depth == "auto"
    r = resolve(c)
    assert r.chunk_sizes == (16 * 2**20,) and r.resident_fraction == 0.0
    assert hash(c) == hash(ChunkFlowConfig())
    assert c.fingerprint() == ChunkFlowConfig.from_options({}).fingerprint()


def test_from_options_converts_and_fingerprints():
    c = ChunkFlowConfig.from_options({"chunk_size": "1MiB", "resident_fraction": 1, "inductor": {"max_autotune": False}})
    assert c.chunk_size == 2**20 and c.resident_fraction == 1.0 and c.inductor == (("max_autotune", False),)
    assert c.fingerprint() != ChunkFlowConfig().fingerprint()
    # the dump directory does not change the generated code, so it does not change the fingerprint
    assert ChunkFlowConfig(dump="/tmp/x").fingerprint() == ChunkFlowConfig().fingerprint()


@pytest.mark.parametrize("options,match", [
    ({"chunksize": 1}, r"unknown chunkflow option\(s\) \['chunksize'\]; allowed: chunk_size, resident_fraction"),
    ({"chunk_size": 1000}, "chunk_size: must be a multiple of 256"),
    ({"chunk_size": "big"}, "chunk_size: cannot parse 'big'"),
    ({"resident_fraction": 1.5}, r"resident_fraction: expected a number in \[0, 1\], got 1.5"),
    ({"resident_fraction": "half"}, "resident_fraction"),
    ({"prefetch_depth": -1}, "prefetch_depth: expected an integer >= 0 or 'auto'"),
    ({"memory_budget": "lots"}, "memory_budget: cannot parse 'lots'"),
    ({"memory_budget": 0}, "memory_budget: must be positive"),
    ({"memory_budget": "8GiB", "resident_fraction": 0.5}, "resident_fraction and memory_budget cannot be used together"),
    ({"profile": 3}, "profile: expected a built-in profile name or a JSON file path"),
    ({"prefetch_depth": 1.0}, "prefetch_depth"),
    ({"overlap_copies": "yes"}, "overlap_copies: expected True or False"),
    ({"dump": 3}, "dump: expected a directory path"),
    ({"inductor": 3}, "inductor: expected a dict"),
    ({"inductor": {"not_an_option": 1}}, "'not_an_option' is not an Inductor config option"),
    ({"inductor": {"post_grad_custom_post_pass": None}}, "set by the chunkflow backend"),
])
def test_bad_options_name_the_key(options, match):
    with pytest.raises(ValueError, match=match):
        ChunkFlowConfig.from_options(options)


def test_memory_budget_forms():
    assert ChunkFlowConfig(memory_budget="1.5GiB").memory_budget == int(1.5 * 2**30)
    assert ChunkFlowConfig(memory_budget="auto").memory_budget == "auto"
    assert ChunkFlowConfig(memory_budget=2**30).fingerprint() != ChunkFlowConfig(memory_budget=2**31).fingerprint()


def test_modes():
    patches = ChunkFlowConfig.from_options({}, "max-autotune-no-cudagraphs").inductor_patches()
    assert patches["max_autotune"] is True and not patches.get("triton.cudagraphs")
    assert ChunkFlowConfig.from_options({"mode": "max-autotune-no-cudagraphs"}).mode == "max-autotune-no-cudagraphs"
    for mode in ("reduce-overhead", "max-autotune"):   # both turn on CUDA graphs
        with pytest.raises(ValueError, match="CUDA graphs are not supported.*'max-autotune-no-cudagraphs'"):
            ChunkFlowConfig.from_options({}, mode)
    with pytest.raises(ValueError, match="mode: expected one of default, max-autotune-no-cudagraphs, got 'fast'"):
        ChunkFlowConfig.from_options({"mode": "fast"})


def test_dump_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(DUMP_ENV, str(tmp_path))
    assert ChunkFlowConfig.from_options({}).dump == str(tmp_path)
    assert ChunkFlowConfig.from_options({"dump": None}).dump is None


def test_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        ChunkFlowConfig().chunk_size = 1  # type: ignore[misc]
