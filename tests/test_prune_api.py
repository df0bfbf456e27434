"""The public entry point `prune()`: argument checks, the token budget K, the registry, results."""

import inspect
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from fpcli.prune import (
    Forest,
    OptionSpec,
    PruneResult,
    Selection,
    available_methods,
    options_of,
    prune,
    register_method,
    validate,
)
from fpcli.prune import registry
from fpcli.prune.registry import keep_count

BUILTIN = ["none", "uniform", "random", "gprune", "divprune", "dycoke", "forestprune", "visionzip",
           "vidcom2", "fastvid", "holitom", "flashvid"]


def features(t=2, n=4, d=3, dtype=torch.float32):
    return torch.arange(t * n * d, dtype=dtype).reshape(t, n, d) % 7 - 3


def test_builtin_methods_are_registered_in_order():
    assert available_methods() == BUILTIN


@pytest.mark.parametrize(
    ("ratio", "total", "k"),
    [
        (0.0, 7, 7),
        (0, 1, 1),
        (0.5, 4, 2),
        (0.5, 5, 3),  # 2.5 rounds up
        (0.5, 3, 2),  # 1.5 rounds up
        (0.5, 7, 4),  # 3.5 rounds up (not to even)
        (0.9, 5, 1),  # exactly 0.5 with ratio read as 9/10 (the float is 0.0999..98 * 5)
        (0.9, 15, 2),  # exactly 1.5
        (0.9, 14, 1),  # 1.4
        (0.7, 10, 3),  # (1 - 0.7) is 0.30000000000000004 in binary
        (0.75, 6, 2),
        (0.9, 12544, 1254),  # 64 x 196 tokens at 90 %: 1254.4
        (0.999, 100, 1),  # 0.1 -> at least one token
        (0.999, 1, 1),
        (0.25, 2, 2),  # 1.5 rounds up
    ],
)
def test_keep_count_rounds_half_up_on_the_decimal_ratio(ratio, total, k):
    assert keep_count(ratio, total) == k


def test_result_fields():
    x = features(t=3, n=4)
    r = prune(x, grid=(2, 2), ratio=0.5, method="uniform")
    assert isinstance(r, PruneResult)
    assert (r.method, r.ratio, r.k, r.forest) == ("uniform", 0.5, 6, None)
    assert r.keep.dtype == torch.long and r.per_frame.dtype == torch.long
    assert r.keep.tolist() == sorted(set(r.keep.tolist()))
    assert r.per_frame.tolist() == [2, 2, 2]
    assert r.keep.device == x.device


def test_int_ratio_and_list_grid_are_accepted():
    r = prune(features(), grid=[2, 2], ratio=0, method="none")
    assert r.ratio == 0.0 and isinstance(r.ratio, float)
    assert r.keep.tolist() == list(range(8))
    assert r.per_frame.tolist() == [4, 4]


def test_numpy_scalars_are_accepted():
    r = prune(features(), grid=(np.int64(2), np.int32(2)), ratio=np.float32(0.5), method="uniform")
    assert (r.ratio, r.k) == (0.5, 4) and isinstance(r.ratio, float)
    with pytest.raises(ValueError, match=r"^ratio must be in \[0, 1\), got 1.0$"):
        prune(features(), grid=(2, 2), ratio=np.float64(1.0), method="uniform")


def test_default_method_is_forestprune():
    assert inspect.signature(prune).parameters["method"].default == "forestprune"
    r = prune(torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0)), grid=(2, 2), ratio=0.5)
    assert r.method == "forestprune" and isinstance(r.forest, Forest) and r.k == 6


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ([[[1.0]]], "features must be a torch.Tensor of shape [T, N, D], got list"),
        (torch.ones(2, 4, 3, dtype=torch.long), "features must have a floating dtype, got torch.int64"),
        (torch.ones(4, 3), "features must have shape [T, N, D], got [4, 3]"),
        (torch.ones(1, 2, 4, 3), "features must have shape [T, N, D], got [1, 2, 4, 3]"),
        (torch.ones(0, 4, 3), "features must have T, N, D >= 1, got [0, 4, 3]"),
        (torch.ones(2, 4, 0), "features must have T, N, D >= 1, got [2, 4, 0]"),
        (torch.tensor([[[1.0], [math.nan], [0.0], [1.0]]]), "features must be finite, got NaN or inf values"),
        (torch.tensor([[[1.0], [math.inf], [0.0], [1.0]]]), "features must be finite, got NaN or inf values"),
    ],
)
def test_invalid_features(x, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prune(x, grid=(2, 2), ratio=0.5, method="uniform")


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ((4,), "grid must be a pair of positive ints (H, W), got (4,)"),
        ((2, 2, 1), "grid must be a pair of positive ints (H, W), got (2, 2, 1)"),
        ((0, 4), "grid must be a pair of positive ints (H, W), got (0, 4)"),
        ((-2, -2), "grid must be a pair of positive ints (H, W), got (-2, -2)"),
        ((2.0, 2), "grid must be a pair of positive ints (H, W), got (2.0, 2)"),
        ((True, 4), "grid must be a pair of positive ints (H, W), got (True, 4)"),
        ("22", "grid must be a pair of positive ints (H, W), got '22'"),
        ((2, 3), "grid (H, W) = (2, 3) must satisfy H*W == N = 4, got H*W = 6"),
        ((1, 1), "grid (H, W) = (1, 1) must satisfy H*W == N = 4, got H*W = 1"),
    ],
)
def test_invalid_grid(grid, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prune(features(), grid=grid, ratio=0.5, method="uniform")


@pytest.mark.parametrize(
    ("ratio", "message"),
    [
        (1.0, "ratio must be in [0, 1), got 1.0"),
        (1, "ratio must be in [0, 1), got 1"),
        (-0.1, "ratio must be in [0, 1), got -0.1"),
        (1.5, "ratio must be in [0, 1), got 1.5"),
        (math.nan, "ratio must be in [0, 1), got nan"),
        (math.inf, "ratio must be in [0, 1), got inf"),
        (True, "ratio must be a number in [0, 1), got True"),
        ("0.5", "ratio must be a number in [0, 1), got '0.5'"),
        (None, "give ratio or budget, not both and not neither"),  # no ratio: prune(budget=K)
    ],
)
def test_invalid_ratio(ratio, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prune(features(), grid=(2, 2), ratio=ratio, method="uniform")


def test_unknown_method_lists_the_available_ones():
    expected = f"unknown method 'foo'; available: {', '.join(available_methods())}"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        prune(features(), grid=(2, 2), ratio=0.5, method="foo")
    with pytest.raises(ValueError, match=r"^unknown method None; available: none, uniform, "):
        prune(features(), grid=(2, 2), ratio=0.5, method=None)


def test_unknown_option_names_the_option_and_the_accepted_ones():
    with pytest.raises(ValueError, match=r"^unknown option 'sed' for method 'random'; accepted options: seed$"):
        prune(features(), grid=(2, 2), ratio=0.5, method="random", sed=1)
    with pytest.raises(ValueError, match=r"^unknown option 'seed' for method 'uniform'; it takes no options$"):
        prune(features(), grid=(2, 2), ratio=0.5, method="uniform", seed=1)


def test_argument_checks_run_in_order_features_grid_ratio_method():
    with pytest.raises(ValueError, match="^features"):
        prune(torch.ones(4, 3), grid=(0, 0), ratio=2.0, method="foo")
    with pytest.raises(ValueError, match="^grid"):
        prune(features(), grid=(0, 0), ratio=2.0, method="foo")
    with pytest.raises(ValueError, match="^ratio"):
        prune(features(), grid=(2, 2), ratio=2.0, method="foo")


def test_registering_a_method_is_one_function(scratch_registry):
    @register_method("last-frames")
    def select(features, grid, k, *, offset=0):
        t, n, _ = features.shape
        return Selection(torch.arange(t * n - k - offset, t * n - offset, device=features.device))

    assert available_methods()[-1] == "last-frames"
    r = prune(features(t=3), grid=(2, 2), ratio=0.5, method="last-frames")
    assert r.keep.tolist() == [6, 7, 8, 9, 10, 11] and r.per_frame.tolist() == [0, 2, 4]
    r = prune(features(t=3), grid=(2, 2), ratio=0.5, method="last-frames", offset=2)
    assert r.keep.tolist() == [4, 5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match=r"^unknown option 'shift' for method 'last-frames'; accepted options: offset$"):
        prune(features(t=3), grid=(2, 2), ratio=0.5, method="last-frames", shift=2)


def test_forest_is_passed_through(scratch_registry):
    marker = object()

    @register_method("with-forest")
    def select(features, grid, k):
        return Selection(torch.arange(k), forest=marker)

    assert prune(features(), grid=(2, 2), ratio=0.5, method="with-forest").forest is marker


def test_method_with_var_keyword_options_checks_them_itself(scratch_registry):
    @register_method("open")
    def select(features, grid, k, **options):
        return Selection(torch.arange(k) + options.get("shift", 0))

    assert prune(features(), grid=(2, 2), ratio=0.5, method="open", shift=1).keep.tolist() == [1, 2, 3, 4]


def test_duplicate_registration_is_an_error(scratch_registry):
    with pytest.raises(ValueError, match=r"^method 'uniform' is already registered$"):

        @register_method("uniform")
        def select(features, grid, k):
            return Selection(torch.arange(k))

    assert registry._METHODS["uniform"].fn.__module__ == "fpcli.prune.baselines"


def test_empty_method_name_is_an_error():
    with pytest.raises(ValueError, match=r"^method name must be a non-empty string, got ''$"):
        register_method("")


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (torch.arange(3), r"^method 'broken' must return a LongTensor \[4\] on cpu, got torch.int64 \[3\] on cpu$"),
        (torch.arange(4, dtype=torch.int32), r"^method 'broken' must return a LongTensor \[4\] on cpu, got torch.int32"),
        (torch.tensor([0, 1, 1, 2]), r"^method 'broken' returned indices that are not unique and in \[0, 8\)$"),
        (torch.tensor([0, 1, 2, 8]), r"^method 'broken' returned indices that are not unique and in \[0, 8\)$"),
        (torch.tensor([-1, 1, 2, 3]), r"^method 'broken' returned indices that are not unique and in \[0, 8\)$"),
        ([0, 1, 2, 3], r"^method 'broken' must return a LongTensor \[4\] on cpu, got list$"),
    ],
)
def test_a_method_breaking_the_contract_is_a_runtime_error(scratch_registry, returned, message):
    @register_method("broken")
    def select(features, grid, k):
        return Selection(returned)

    with pytest.raises(RuntimeError, match=message):
        prune(features(), grid=(2, 2), ratio=0.5, method="broken")


def test_a_method_not_returning_a_selection_is_a_runtime_error(scratch_registry):
    @register_method("bare")
    def select(features, grid, k):
        return torch.arange(k)

    with pytest.raises(RuntimeError, match=r"^method 'bare' returned Tensor, expected Selection$"):
        prune(features(), grid=(2, 2), ratio=0.5, method="bare")


def test_keep_is_sorted_whatever_order_the_method_returns(scratch_registry):
    @register_method("reversed")
    def select(features, grid, k):
        return Selection(torch.tensor([7, 0, 5, 2]))

    r = prune(features(), grid=(2, 2), ratio=0.5, method="reversed")
    assert r.keep.tolist() == [0, 2, 5, 7] and r.per_frame.tolist() == [2, 2]


def test_validate_checks_without_any_tensor_and_fills_defaults():
    assert validate(0.9, "forestprune") == {"tau_s": 0.9, "tau_p": 0.8, "node_ratio": 0.5}
    assert validate(0.5, "forestprune", tau_s=1) == {"tau_s": 1.0, "tau_p": 0.8, "node_ratio": 0.5}
    assert validate(0.5, "random", seed=3) == {"seed": 3}
    assert validate(0.0, "none") == {}


@pytest.mark.parametrize(
    ("ratio", "method", "options", "message"),
    [
        (0.05, "none", {}, "method 'none' keeps every token; ratio must be 0"),  # K would round to all tokens
        (0.5, "forestprune", {"tau_s": 5}, "tau_s must be a number in [-1, 1], got 5"),
        (0.5, "forestprune", {"tau_p": -0.1}, "tau_p must be a number in [0, 1], got -0.1"),
        (0.5, "forestprune", {"node_ratio": 0.0}, "node_ratio must be a number in (0, 1], got 0.0"),
        (0.5, "forestprune", {"tau_s": "high"}, "tau_s must be a number in [-1, 1], got 'high'"),
        (0.5, "uniform", {"tau_s": 5}, "unknown option 'tau_s' for method 'uniform'; it takes no options"),
        (1.0, "uniform", {}, "ratio must be in [0, 1), got 1.0"),
    ],
)
def test_validate_rejects_what_prune_rejects(ratio, method, options, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        validate(ratio, method, **options)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prune(features(), grid=(2, 2), ratio=ratio, method=method, **options)


def test_options_of_declares_defaults_types_ranges_and_help():
    tau_s, tau_p, node_ratio = options_of("forestprune").values()
    assert (tau_s.name, tau_s.default, tau_s.type, tau_s.interval) == ("tau_s", 0.9, float, "[-1, 1]")
    assert (tau_p.default, tau_p.interval, node_ratio.interval) == (0.8, "[0, 1]", "(0, 1]")
    assert tau_s.help and tau_s.describe() == "in [-1, 1], default 0.9"
    assert options_of("random")["seed"].interval == "[0, 2**63)"
    assert options_of("uniform") == {}


def test_a_users_method_gets_specs_from_its_signature_or_its_declaration(scratch_registry):
    @register_method("shifted")
    def shifted(features, grid, k, *, offset=0, label="x"):
        return Selection(torch.arange(k) + offset)

    specs = options_of("shifted")
    assert [(s.name, s.default, s.type, s.range) for s in specs.values()] == [
        ("offset", 0, int, None), ("label", "x", str, None)]
    assert specs["offset"].parse("2") == 2
    with pytest.raises(ValueError, match=r"^offset must be an int, got 'two'$"):
        specs["offset"].parse("two")

    @register_method("bounded", options=[OptionSpec("strength", 1.0, float, (0.0, 2.0), "how hard")])
    def bounded(features, grid, k, *, strength):
        return Selection(torch.arange(k))

    with pytest.raises(ValueError, match=r"^strength must be a number in \[0, 2\], got 3.0$"):
        validate(0.5, "bounded", strength=3.0)
    assert prune(features(), grid=(2, 2), ratio=0.5, method="bounded").k == 4


def test_declared_options_must_match_the_signature(scratch_registry):
    with pytest.raises(ValueError, match=r"^options \['a'\] must be the keyword-only parameters of select"):
        @register_method("mismatch", options=[OptionSpec("a", 1, int)])
        def select(features, grid, k, *, b=1):
            return Selection(torch.arange(k))


def test_listing_and_validating_import_no_torch():
    code = ("import sys; from fpcli.prune.registry import available_methods, validate; validate(0.5, 'forestprune', "
            "tau_s=0.5); print(len(available_methods()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "12 False"
