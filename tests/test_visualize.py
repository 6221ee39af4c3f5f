import json
import math
import sys

import pytest

from cfcompile.report.visualize import Span, plot_memory_latency, track_order, write_perfetto, write_timeline_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def step_spans(blocks=4, chunks_per_block=3):
    """A toy predicted step: copies on h2d, blocks (and a stall where a copy is late) on compute, one all-to-all."""
    spans, t, c = [], 0.0, 0.0
    for b in range(blocks):
        for k in range(chunks_per_block):
            spans.append(Span("h2d", f"chunk {b * chunks_per_block + k}", c, c + 0.25, "copy",
                              (("bytes", 16 << 20), ("group", b))))
            c += 0.25
        if c > t:
            spans.append(Span("compute", f"wait {b}", t, c, "stall"))
            t = c
        spans.append(Span("compute", f"block {b}", t, t + 1.0, "block"))
        t += 1.0
    spans.append(Span("collective", "all_to_all 0", 1.0, 1.5, "all_to_all"))
    return spans


def test_span_validation():
    s = Span("compute", "block 0", 1, 2, "block", {"bytes": 3})
    assert (s.start_ms, s.end_ms, s.duration_ms, s.args) == (1.0, 2.0, 1.0, (("bytes", 3),))
    assert Span("h2d", "empty", 2.0, 2.0).duration_ms == 0.0
    with pytest.raises(ValueError, match="ends before it starts"):
        Span("compute", "b", 2.0, 1.0)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            Span("compute", "b", 0.0, bad)
    with pytest.raises(TypeError, match="number"):
        Span("compute", "b", "0", 1.0)
    with pytest.raises(ValueError, match="track"):
        Span("", "b", 0.0, 1.0)
    with pytest.raises(TypeError, match="pairs"):
        Span("compute", "b", 0.0, 1.0, args=(("bytes",),))
    with pytest.raises(ValueError, match="duplicate"):
        Span("compute", "b", 0.0, 1.0, args=(("k", 1), ("k", 2)))


def test_track_order():
    spans = [Span(t, "x", 0, 1) for t in ("zeta", "h2d", "collective", "compute")]
    assert track_order(spans) == ["compute", "h2d", "collective", "zeta"]
    assert track_order([Span("h2d", "x", 0, 1)]) == ["h2d"]


def test_perfetto(tmp_path):
    spans = step_spans()
    path = write_perfetto(tmp_path / "sub" / "trace.json", spans, title="toy step", metadata={"profile": "h100"})
    doc = json.loads(path.read_text())
    assert doc["displayTimeUnit"] == "ms" and doc["metadata"] == {"profile": "h100"}
    events = doc["traceEvents"]
    assert {(e["pid"]) for e in events} == {1}
    meta = {(e["name"], e["tid"]): e["args"] for e in events if e["ph"] == "M"}
    assert meta[("process_name", 0)] == {"name": "toy step"}
    threads = {a["name"]: tid for (n, tid), a in meta.items() if n == "thread_name"}
    assert threads == {"compute": 1, "h2d": 2, "collective": 3}

    xs = [e for e in events if e["ph"] == "X"]
    assert len(xs) == len(spans)
    by_name = {e["name"]: e for e in xs}
    chunk = by_name["chunk 1"]  # 0.25..0.5 ms
    assert (chunk["ts"], chunk["dur"], chunk["tid"], chunk["cat"]) == (250.0, 250.0, 2, "copy")
    assert chunk["args"] == {"bytes": 16 << 20, "group": 0}
    assert by_name["block 0"]["ts"] == 750.0 and by_name["block 0"]["dur"] == 1000.0
    stalls = [e for e in xs if e["cat"] == "stall"]
    assert stalls and all(e["name"].startswith("STALL") and e["tid"] == 1 for e in stalls)
    assert by_name["all_to_all 0"]["tid"] == 3


def test_perfetto_deterministic(tmp_path):
    spans = step_spans()
    a = write_perfetto(tmp_path / "a.json", spans, metadata={"b": 1, "a": 2}).read_bytes()
    b = write_perfetto(tmp_path / "b.json", list(reversed(spans)), metadata={"a": 2, "b": 1}).read_bytes()
    assert a == b
    assert a.index(b'"a":2') < a.index(b'"b":1')  # sorted keys


def test_perfetto_empty(tmp_path):
    doc = json.loads(write_perfetto(tmp_path / "e.json", []).read_text())
    assert [e["name"] for e in doc["traceEvents"]] == ["process_name"]


def _png_size(path):
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        return im.size


def test_timeline_png(tmp_path):
    path = write_timeline_png(tmp_path / "t.png", step_spans(), title="toy step", subtitle="cpu profile")
    w, h = _png_size(path)
    assert 1000 < w < 1600 and 150 < h < w  # 14 in at 100 dpi, trimmed; wide, not tall


def test_timeline_png_large(tmp_path):
    # ~60 blocks, ~1000 copies: the size of a Flux step with 16 MiB chunks
    path = write_timeline_png(tmp_path / "big.png", step_spans(blocks=60, chunks_per_block=17), title="flux",
                              width_in=10)
    w, h = _png_size(path)
    assert 700 < w < 1200 and h < w


def test_timeline_png_rejects_empty(tmp_path):
    with pytest.raises(ValueError, match="no spans"):
        write_timeline_png(tmp_path / "e.png", [], title="empty")


def test_memory_latency_png(tmp_path):
    rows = [dict(label=f"r={r}", peak_gib=1.6 + 22 * r, step_ms=330 - 190 * r, predicted_step_ms=320 - 180 * r,
                 series="chunkflow") for r in (0.5, 0.0, 1.0)]
    rows += [dict(label="group offload", peak_gib=2.3, step_ms=430, series="layerwise"),
             dict(label="on device", peak_gib=24.0, step_ms=140, series="no offload")]
    w, h = _png_size(plot_memory_latency(tmp_path / "m.png", rows, title="Flux.1"))
    assert 400 < w < 1200 and 300 < h < 900


def test_memory_latency_validation(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        plot_memory_latency(tmp_path / "m.png", [dict(label="x", peak_gib=1.0)], title="t")
    with pytest.raises(ValueError, match="finite"):
        plot_memory_latency(tmp_path / "m.png", [dict(label="x", peak_gib=math.nan, step_ms=1.0)], title="t")


def test_matplotlib_missing(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'cfcompile\[plot\]'"):
        write_timeline_png(tmp_path / "t.png", step_spans(), title="t")
    with pytest.raises(ImportError, match=r"cfcompile\[plot\]"):
        plot_memory_latency(tmp_path / "m.png", [dict(label="x", peak_gib=1.0, step_ms=1.0)], title="t")
    # the JSON writer needs no matplotlib
    assert write_perfetto(tmp_path / "t.json", step_spans()).exists()


def _check_timeline(prediction, spans):
    """Every span inside the call; the compute stream is blocks and stalls back to back, summing to the call."""
    step = prediction.step_ms
    outside = [s for s in spans if s.start_ms < -1e-6 or s.end_ms > step + 1e-6]
    assert not outside, f"{len(outside)} spans outside [0, {step:.2f}] ms, e.g. {outside[0]}"
    compute = sorted((s for s in spans if s.track == "compute"), key=lambda s: s.start_ms)
    for a, b in zip(compute, compute[1:]):
        assert b.start_ms >= a.end_ms - 1e-6, f"{a} overlaps {b}"
    assert sum(s.duration_ms for s in compute) == pytest.approx(step, rel=1e-6)
    assert compute[-1].end_ms == pytest.approx(step, rel=1e-6)


def test_timeline_with_several_stalls_stays_inside_the_call():
    # Three groups read back to back, all copied at the start: each stalls; the stalls used to be drawn shifted
    # by the stalls before them (wall time shifted once more), past the end of the call.
    from cfcompile.costmodel.model import StreamedGroup, simulate
    from cfcompile.costmodel.profiles import DeviceProfile

    toy = DeviceProfile("toy", matmul_tflops=1.0, memory_gbs=100.0, h2d_gbs=10.0, h2d_latency_us=0.0)
    cum = [0.0, 2.0, 4.0, 6.0, 8.0]  # four nodes of 2 ms
    groups = [StreamedGroup(k, n, 0, 50 * 10**6, 1) for k, n in (("a", 1), ("b", 2), ("c", 3))]
    p = simulate(groups, cum, toy)
    assert [g.stall_ms for g in p.groups] == pytest.approx([3.0, 3.0, 3.0])  # 5 ms copies, 2 ms blocks
    spans = p.spans([("pro", 0.0, 2.0), ("a", 2.0, 4.0), ("b", 4.0, 6.0), ("c", 6.0, 8.0)])
    _check_timeline(p, spans)
    stalls = [(s.start_ms, s.end_ms) for s in spans if s.kind == "stall"]
    assert stalls == [pytest.approx((2.0, 5.0)), pytest.approx((7.0, 10.0)), pytest.approx((12.0, 15.0))]


@pytest.mark.parametrize("model,workload,options", [
    ("flux", dict(height=1024, width=1024), dict(memory_budget="12GiB")),
    ("flux", dict(height=1024, width=1024), dict(resident_fraction=0.0)),
    ("wan", dict(height=480, width=832, frames=81), dict(memory_budget="12GiB")),
    ("wan", dict(height=480, width=832, frames=81), dict(resident_fraction=0.5)),
])  # full size (~13 s each on the meta device): the stalls and wrap-around copies of the real plans
def test_planned_timeline_stays_inside_the_call(model, workload, options):
    pytest.importorskip("diffusers")
    from cfcompile.plan.search import block_spans
    from cfcompile.planning import plan_model
    from cfcompile.presets import Workload

    report = plan_model(model, Workload(**workload), profile="H100", **options)
    _check_timeline(report.prediction, report.prediction.spans(block_spans(report.plan, report.costs)))
