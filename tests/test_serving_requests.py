"""Requests, task DAGs, JSON-lines workloads and their generators (cfcompile.elastic.serving.requests / workload)."""

import json

import pytest

from cfcompile.elastic.serving import Request, build_tasks, generate_workload, read_workload, write_workload
from cfcompile.elastic.serving.costs import synthetic_costs
from cfcompile.elastic.serving.workload import ALPHA


def test_request_compiles_to_a_chain():
    tasks = build_tasks(Request("r1", "qwen-image", 1024, 1024, steps=12), chunk_steps=5)
    assert [t.kind for t in tasks] == ["text_encode", "prepare", "denoise", "denoise", "denoise", "vae_decode"]
    assert [t.steps for t in tasks if t.kind == "denoise"] == [(0, 5), (5, 10), (10, 12)]
    assert tasks[0].deps == () and all(t.deps == (p.id,) for p, t in zip(tasks, tasks[1:]))
    assert [t.index for t in tasks] == list(range(6)) and all(t.group is None for t in tasks)
    assert tasks[3].on([2, 0]).group == (2, 0) and tasks[3].parallel and not tasks[0].parallel


@pytest.mark.parametrize("kw, msg", [({"height": 0}, "height"), ({"steps": 2.5}, "steps"), ({"cfg": 1}, "cfg"),
                                     ({"arrival_s": -1.0}, "arrival_s"),
                                     ({"arrival_s": 5.0, "deadline_s": 1.0}, "before arrival")])
def test_bad_request(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Request(**{"id": "r", "model": "qwen-image", "height": 64, "width": 64, **kw})
    with pytest.raises(ValueError, match="chunk_steps"):
        build_tasks(Request("r", "qwen-image", 64, 64), chunk_steps=0)


def test_jsonl_round_trip_and_errors(tmp_path):
    reqs = generate_workload("uniform", gpus=2, minutes=2, load=0.5, seed=3)
    path = write_workload(reqs, tmp_path / "w.jsonl")
    assert read_workload(path) == reqs
    line = json.loads(path.read_text().splitlines()[0])
    assert {"id", "arrival_s", "model", "height", "width", "frames", "steps", "class", "priority",
            "deadline_s"} <= set(line)
    good = json.dumps({"id": "a", "arrival_s": 0, "model": "wan", "height": 480, "width": 832, "slo_scale": 2.0})
    for bad, msg in [("{not json", r"w2.jsonl:2: not valid JSON"),
                     ('{"id": "b", "arrival_s": 0, "model": "wan", "height": 480}', r":2: missing keys \['width'\]"),
                     ('{"id": "b", "arrival_s": 0, "model": "wan", "height": 48, "width": 8, "colour": 1}',
                      r":2: unknown keys \['colour'\]"),
                     ('{"id": "b", "arrival_s": 0, "model": "wan", "height": -4, "width": 8}', ":2: .*height"),
                     (good, r":2: request id 'a' already used on line 1")]:
        (tmp_path / "w2.jsonl").write_text(good + "\n" + bad + "\n")
        with pytest.raises(ValueError, match=msg):
            read_workload(tmp_path / "w2.jsonl")


def test_generators_are_seeded_and_hit_the_load():
    costs = synthetic_costs()
    a = generate_workload("gfdit:qwen-image", gpus=8, minutes=10, load=1.0, seed=7)
    assert a == generate_workload("gfdit:qwen-image", gpus=8, minutes=10, load=1.0, seed=7)
    assert a != generate_workload("gfdit:qwen-image", gpus=8, minutes=10, load=1.0, seed=8)
    assert {r.model for r in a} == {"qwen-image"} and {r.klass for r in a} == {"S", "M", "L"}
    assert all(r.arrival_s < 540 for r in a)  # gfdit drains: no arrivals in the last 10%
    work = sum(costs.single_gpu_s(r) for r in a)
    assert 0.8 < work / (8 * 540) < 1.2  # offered load ~1.0 over the arrival window
    for r in a:
        assert r.deadline_s == pytest.approx(r.arrival_s + ALPHA[r.klass] * costs.single_gpu_s(r))
    both = generate_workload("bursty", gpus=4, minutes=5, load=1.0, seed=0)
    assert {r.model for r in both} == {"qwen-image", "wan"}
    with pytest.raises(ValueError, match="unknown mix"):
        generate_workload("poisson", 4, 1, 1.0, 0)
    with pytest.raises(ValueError, match="unknown model 'flux'"):
        generate_workload("gfdit:flux", 4, 1, 1.0, 0)
