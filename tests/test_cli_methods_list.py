"""`forestprune methods`: the catalogue as a listing and as JSON, checked against the declarations in the
registries (fpcli.prune.builtin, fpcli.model.inllm.options), and the "takes no options" wording."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import register_method

runner = CliRunner()


def test_json_lists_every_method_with_kind_and_options():
    result = runner.invoke(app, ["methods", "--json"])
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in records] == ["none", "uniform", "random", "gprune", "divprune", "dycoke",
                                            "forestprune", "visionzip", "vidcom2", "fastvid", "holitom", "flashvid",
                                            "fastv", "framefusion", "sttm"]
    assert {r["name"]: r["kind"] for r in records}["fastv"] == "in-llm"
    assert {r["name"]: r["kind"] for r in records}["forestprune"] == "pre-llm"
    assert {r["name"]: r["kind"] for r in records}["holitom"] == "two-stage"
    forest = next(r for r in records if r["name"] == "forestprune")
    assert forest["options"] == [
        {"name": "tau_s", "type": "float", "default": 0.9, "range": "[-1, 1]",
         "help": "cosine similarity a token needs to join an earlier frame's tree"},
        {"name": "tau_p", "type": "float", "default": 0.8, "range": "[0, 1]",
         "help": "that link also needs a normalised distance <= 1 - tau_p"},
        {"name": "node_ratio", "type": "float", "default": 0.5, "range": "(0, 1]",
         "help": "fraction of each frame's tokens that become nodes"},
    ]
    sttm = next(r for r in records if r["name"] == "sttm")
    assert [(o["name"], o["default"]) for o in sttm["options"]] == [
        ("layer", 2), ("tau_s", 0.85), ("tau_t", 0.6), ("root_level", 1)]


def test_listing_one_method_and_no_options():
    result = runner.invoke(app, ["methods", "fastv"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "fastv  (in-llm) inside the LLM: every visual token enters, the decoder layers drop or merge them",
        "  K  int in [1, 2**63), default 2: layer from which only the kept visual tokens go on (FastV's K)",
    ]
    result = runner.invoke(app, ["methods", "gprune"])
    assert result.stdout.splitlines()[1] == "  takes no options"


def test_unknown_method_is_usage_error():
    result = runner.invoke(app, ["methods", "fastvv"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith("Error: unknown method 'fastvv'; available: none, uniform,")


def test_a_method_registered_in_python_is_listed(scratch_registry):
    @register_method("last-frames", options=[OptionSpec("offset", 1, int, (0, 10), "frames from the end")])
    def last_frames(features, grid, k, *, offset=1):
        raise AssertionError("not run")

    result = runner.invoke(app, ["methods", "last-frames"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1] == "  offset  int in [0, 10], default 1: frames from the end"


def test_method_and_opt_help_point_to_the_listing():
    result = runner.invoke(app, ["ask", "--help"], env={"COLUMNS": "300"})
    assert result.stdout.count("'forestprune methods'") == 2


def test_shell_completion_is_offered():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
