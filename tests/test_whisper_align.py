"""engine.whisper_align: the batched DTW finds OpenAI's path; token times come out in order, in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.whisper_align import FRAME_S, dtw_starts, median_filter, token_times


def reference_starts(cost: np.ndarray) -> list[int]:
    """OpenAI whisper's dtw_cpu and backtrace, cell by cell; the frame where each row is first reached."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    trace = -np.ones((n + 1, m + 1))
    acc[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            acc[i, j], trace[i, j] = cost[i - 1, j - 1] + c, t
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        i, j = (i - 1, j - 1) if trace[i, j] == 0 else (i - 1, j) if trace[i, j] == 1 else (i, j - 1)
    first: dict[int, int] = {}
    for row, col in reversed(path):
        first.setdefault(row, col)
    return [first[r] for r in range(n)]


@pytest.fixture(params=["numba", "numpy"])
def warp(request, monkeypatch):
    """dtw_starts compiled by numba (where installed: librosa needs it), and without it."""
    import engine.whisper_align as wa

    if request.param == "numba":
        assert wa._compiled_first_frames() is not None
    else:
        monkeypatch.setattr(wa, "_compiled_first_frames", lambda: None)
    return request.param


def test_compiled_and_numpy_warps_agree_on_ties_and_shapes():
    import engine.whisper_align as wa

    rng = np.random.default_rng(3)
    costs = [np.round(rng.standard_normal((int(rng.integers(1, 40)), int(rng.integers(1, 300))))).astype(np.float32)
             for _ in range(30)]  # whole numbers: many ties between the three ways into a cell
    compiled = dtw_starts(costs)
    assert [list(a) for a in compiled] == [list(b) for b in wa._dtw_starts_numpy(costs)]
    assert [list(a) for a in compiled] == [reference_starts(c) for c in costs]


def test_batched_dtw_finds_openais_path_for_matrices_of_any_shape(warp):
    rng = np.random.default_rng(0)
    costs = [rng.standard_normal(shape).astype(np.float32) for shape in ((7, 30), (12, 25), (1, 9), (3, 40),
                                                                          (20, 21), (5, 5))]
    got = dtw_starts(costs)
    assert [list(g) for g in got] == [reference_starts(c) for c in costs]
    assert dtw_starts([]) == []


def test_a_clear_diagonal_is_followed(warp):
    # Token k is said in frames 10k .. 10k + 9: the cheapest path enters row k at frame 10k.
    cost = np.ones((4, 40), dtype=np.float32)
    for k in range(4):
        cost[k, 10 * k:10 * k + 10] = -1.0
    (starts,) = dtw_starts([cost])
    assert list(starts) == [0, 10, 20, 30]


def test_median_filter_takes_the_middle_of_each_window_edges_reflected():
    x = torch.tensor([[1.0, 9.0, 2.0, 8.0, 3.0]])
    assert median_filter(x, 3).tolist() == [[9.0, 2.0, 8.0, 3.0, 8.0]]
    assert median_filter(x, 1) is x


def test_token_times_are_seconds_each_token_ending_where_the_next_starts():
    # Two rows: 3 text tokens over 60 frames, 1 token over 20 frames (plus the end-of-text row each).
    weights = torch.zeros(2, 2, 4, 60)
    for k in range(4):
        weights[0, :, k, 15 * k:15 * k + 15] = 1.0
    weights[1, :, 0, :10] = 1.0
    weights[1, :, 1, 10:20] = 1.0
    first, second = token_times(weights, counts=[3, 1], frames=[60, 20])
    assert first.ravel().tolist() == pytest.approx([0.0, 15 * FRAME_S, 15 * FRAME_S, 30 * FRAME_S,
                                                    30 * FRAME_S, 45 * FRAME_S])
    assert second.ravel().tolist() == pytest.approx([0.0, 10 * FRAME_S])
    (none,) = token_times(weights[:1], counts=[0], frames=[60])
    assert none.shape == (0, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_rows_aligned_together_on_a_gpu_are_the_rows_aligned_one_by_one():
    import engine.whisper_align as wa

    torch.manual_seed(0)
    weights = torch.rand(9, 4, 30, 400, device="cuda").softmax(dim=-1).half()
    rows, frames = [1, 5, 30, 12, 7, 30, 2, 18, 25], [400, 9, 350, 4, 3, 120, 400, 77, 5]
    together = wa.alignment_matrix(weights, rows, frames)
    alone = [wa.alignment_matrix(weights.cpu()[b:b + 1], [rows[b]], [frames[b]])[0] for b in range(len(rows))]
    for a, b in zip(together, alone):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_rows_aligned_together_are_the_rows_aligned_one_by_one():
    """What a GPU runs (engine.whisper_align._aligned_together), checked on the CPU against the row-by-row path."""
    import engine.whisper_align as wa

    torch.manual_seed(0)
    weights = torch.rand(8, 4, 30, 400).softmax(dim=-1)
    rows, frames = [1, 5, 30, 12, 30, 2, 18, 25], [400, 9, 350, 4, 120, 400, 77, 5]
    together = wa._aligned_together(weights, range(8), rows, frames, 7)
    alone = wa.alignment_matrix(weights, rows, frames)
    for a, b in zip(together, alone):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_the_median_of_7_network_picks_the_middle_value():
    import itertools

    from engine.whisper_align import window_medians

    bits = torch.tensor(list(itertools.product((0.0, 1.0), repeat=7)))  # every 0/1 input: the 0-1 principle
    assert torch.equal(window_medians(bits, 7)[:, 0], bits.sort(dim=-1).values[:, 3])
    x = torch.randn(3, 5, 200)
    x[0, 0, 10:30] = 0.5  # ties
    expected = x.unfold(-1, 7, 1).sort(dim=-1).values[..., 3]
    assert torch.equal(window_medians(x, 7), expected)
    assert torch.equal(window_medians(x, 5), x.unfold(-1, 5, 1).sort(dim=-1).values[..., 2])
