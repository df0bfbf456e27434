"""fpcli.recorded_settings: the record of the settings that change a prediction, and the exit-2 message on resume."""

from __future__ import annotations

import pytest

from fpcli.recorded_settings import SETTING_NAMES, PredictionSettings, SettingsChanged, check_same, differences

BASE = PredictionSettings(model="m", checkpoint="/c#1", layout="onevision", dtype="float32", frames=4,
                          method="forestprune", method_options={"tau_s": 0.9}, ratio=0.9, max_new_tokens=8,
                          temperature=0.0, seed=0).to_dict()


def test_the_record_names_every_setting_the_issue_lists():
    assert SETTING_NAMES == ("model", "checkpoint", "layout", "dtype", "protocol", "frames", "fps", "max_pixels",
                             "index_rule", "method", "method_options", "ratio", "budget", "prompts", "max_new_tokens",
                             "temperature", "seed")
    assert BASE["budget"] is None


def test_differences_in_order_and_missing_reads_as_none():
    current = {**BASE, "frames": 6, "seed": 3}
    assert differences(BASE, current) == [("frames", 4, 6), ("seed", 0, 3)]
    assert differences(BASE, current, ignore=("frames",)) == [("seed", 0, 3)]
    older = {name: value for name, value in BASE.items() if name != "budget"}  # recorded before budget existed
    assert differences(older, BASE) == []


def test_check_same_names_the_setting_both_values_and_the_way_out():
    with pytest.raises(SettingsChanged) as caught:
        check_same(BASE, {**BASE, "frames": 6}, where="runs/mine", restart="give a new --out")
    assert str(caught.value) == "runs/mine was made with frames 4, this run has frames 6"
    assert caught.value.hint == "give a new --out" and caught.value.exit_code == 2
    with pytest.raises(SettingsChanged, match=r'^x was made with method_options \{"tau_s": 0.9\}, this run has '
                                              r'method_options \{"tau_s": 0.5\} \(and 2 other settings\)$'):
        check_same(BASE, {**BASE, "method_options": {"tau_s": 0.5}, "ratio": 0.5, "seed": 1}, where="x",
                   restart="")
    check_same(None, BASE, where="x", restart="")  # nothing recorded: nothing to compare
    check_same(BASE, dict(BASE), where="x", restart="")
