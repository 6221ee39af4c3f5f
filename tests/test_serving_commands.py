"""``python -m cfcompile.elastic.serving`` and ``cfcompile`` share their workload / simulate options and code; the
policy base classes are abstract where a subclass must fill something in."""

import argparse
import json

import pytest

from cfcompile.elastic.serving import ElasticPolicy, QueuePolicy, simulate
from cfcompile.elastic.serving.__main__ import main as serving_main


def _options(main, command):
    """{dest: (option strings, default, required)} of ``command``, read from the parser ``main`` builds."""
    seen = {}
    real = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

    def grab(self, *a, **k):
        raise _Parsed(self)

    class _Parsed(Exception):
        pass

    argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = grab
    try:
        with pytest.raises(_Parsed) as e:
            main([command])
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = real
    sub = next(a for a in e.value.args[0]._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for a in sub._actions:
        if a.dest != "help":
            seen[a.dest] = (tuple(sorted(a.option_strings)), a.default, a.required, a.type, type(a).__name__,
                            a.choices, a.help)
    return seen


@pytest.mark.parametrize("command", ["workload", "simulate"])
def test_same_options_and_defaults_as_cfcompile(command):
    from cfcompile.cli import main as cli_main

    assert _options(serving_main, command) == _options(cli_main, command)


def test_module_entry_point_runs_workload_and_simulate(tmp_path, capsys):
    w = tmp_path / "w.jsonl"
    assert serving_main(["workload", "--mix", "gfdit:qwen-image", "--gpus", "2", "--minutes", "0.5", "--out",
                         str(w)]) == 0
    assert serving_main(["simulate", str(w), "--gpus", "2", "--policy", "edf", "--policy", "edf-triage", "--no-plot",
                         "--out", str(tmp_path / "sim")]) == 0
    s = json.loads((tmp_path / "sim" / "edf-triage" / "summary.json").read_text())
    assert s["policy"] == "edf-triage" and s["completed"] == s["requests"]
    assert serving_main(["simulate", str(w), "--policy", "lifo", "--out", str(tmp_path / "x")]) == 2
    assert "python -m cfcompile.elastic.serving simulate: unknown policy 'lifo'" in capsys.readouterr().err


def test_policy_bases_are_abstract():
    with pytest.raises(TypeError, match="schedule"):
        QueuePolicy()

    class NoKey(ElasticPolicy):
        pass

    with pytest.raises(TypeError, match="key"):
        NoKey()

    class Arrival(ElasticPolicy):  # a user's policy: a key is all it needs
        name = "arrival"

        def key(self, task, view):
            return (view.request(task.request).arrival_s, task.id)

    from cfcompile.elastic.serving import Request

    reqs = [Request(f"r{i}", "qwen-image", 512, 512, arrival_s=float(i)) for i in range(3)]
    assert simulate(reqs, 2, Arrival()).summary["completed"] == 3
