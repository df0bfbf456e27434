"""Which frames are taken: uniform (LLaVA-style linspace, rounded to nearest) and rate-based."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fpcli.video.indices import rate_picks, uniform_indices


def test_uniform_exact_values() -> None:
    assert uniform_indices(250, 16).tolist() == [
        0, 17, 33, 50, 66, 83, 100, 116, 133, 149, 166, 183, 199, 216, 232, 249]
    assert uniform_indices(10, 3).tolist() == [0, 5, 9]  # 4.5 rounds up (the reference's dtype=int gives 4)
    assert uniform_indices(100, 1).tolist() == [0]
    assert uniform_indices(5, 64).tolist() == [0, 1, 2, 3, 4]  # fewer frames than asked: all of them
    assert uniform_indices(1, 8).tolist() == [0]


@given(total=st.integers(1, 200_000), num_frames=st.integers(1, 2048))
def test_uniform_properties(total: int, num_frames: int) -> None:
    idx = uniform_indices(total, num_frames)
    assert idx.dtype == np.int64 and len(idx) == min(total, num_frames)
    assert np.all(np.diff(idx) > 0) and idx[0] == 0
    if len(idx) > 1:
        assert idx[-1] == total - 1
        exact = np.linspace(0, total - 1, len(idx))
        assert np.all(np.abs(idx - exact) <= 0.5 + 1e-9)  # nearest index


def test_rate_constant_and_variable() -> None:
    cfr = np.arange(300) / 30.0  # 10 s at 30 fps
    assert rate_picks(cfr, 10.0, 1.0).tolist() == [30 * k for k in range(10)]
    assert rate_picks(cfr, 10.0, 100.0).tolist() == list(range(300))  # faster than the video: every frame
    vfr = np.array([0.0, 0.1, 0.15, 1.9, 2.0, 2.05])
    assert rate_picks(vfr, 2.1, 1.0).tolist() == [0, 2, 4]  # on screen at 0 s, 1 s, 2 s
    assert rate_picks(vfr, 2.1, 0.01).tolist() == [0]  # slower than the video: its first frame


@given(
    steps=st.lists(st.floats(0.001, 2.0), min_size=0, max_size=300),
    last=st.floats(0.0, 2.0),
    fps=st.floats(0.05, 60.0),
)
def test_rate_properties(steps: list[float], last: float, fps: float) -> None:
    seconds = np.concatenate([[0.0], np.cumsum(steps)])  # [F] ascending frame times
    idx = rate_picks(seconds, float(seconds[-1]) + last, fps)
    assert len(idx) >= 1 and idx[0] == 0
    assert np.all(np.diff(idx) > 0) and idx[-1] < len(seconds)
