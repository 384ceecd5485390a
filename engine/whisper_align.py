"""When each token was said: Whisper's cross-attention alignment (dynamic time warping), batched.

What OpenAI's whisper does for word timestamps (`timing.find_alignment`), and transformers after it:
teacher-force the decoder over the text it wrote, take the cross-attention weights of the model's
alignment heads (generation_config.alignment_heads), normalise each head over the tokens, median
filter along time, average the heads, and find the cheapest monotone path through -weights from the
first token and frame to the last token and the audio's last frame. A token starts where the path
first reaches its row. Here every row of a batch is warped at once, one anti-diagonal of the cost
matrix per numpy step (about tokens + frames steps for the whole batch, not tokens x frames Python
steps per row), so the times cost a few percent of decoding.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

FRAME_S = 0.02  # one encoder frame of Whisper: 320 samples at 16 kHz


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median of `width` neighbours along the last dimension, edges reflected (width odd)."""
    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    pad = width // 2
    shape = x.shape
    padded = F.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect").reshape(*shape[:-1], -1)
    return window_medians(padded, width)


# Devillard's median-of-7 network ("Fast median search", 1998): after these compare-and-swaps, element 3 is
# the median. tests/test_whisper_align.py checks it on every 0/1 input (the 0-1 principle) and against sort.
MEDIAN_OF_7 = ((0, 5), (0, 3), (1, 6), (2, 4), (0, 1), (3, 5), (2, 6), (2, 3), (3, 6), (4, 5), (1, 4), (1, 3), (3, 4))


def window_medians(padded: torch.Tensor, width: int) -> torch.Tensor:
    """The median of every `width` consecutive values along the last dimension ([..., n + width - 1] -> [..., n]).
    Width 7 (Whisper's) through MEDIAN_OF_7's 13 elementwise min/max pairs: the same values a sort picks,
    without sorting a [..., n, 7] tensor (on an H200 the sort took 55 ms of the 57 rows' alignment)."""
    if width != 7:
        return padded.unfold(-1, width, 1).sort(dim=-1).values[..., width // 2]
    n = padded.shape[-1] - width + 1
    p = [padded[..., k:k + n] for k in range(width)]
    for a, b in MEDIAN_OF_7:
        p[a], p[b] = torch.minimum(p[a], p[b]), torch.maximum(p[a], p[b])
    return p[3]


# On a GPU, rows go through alignment_matrix together in groups sized so that a sort of their median filter's
# windows (values and indices: 12 bytes an element) would fit in this; the min/max network for width 7 needs less.
GROUP_BYTES = 1 << 30


def alignment_matrix(weights: torch.Tensor, rows: Sequence[int], frames: Sequence[int],
                     filter_width: int = 7) -> list[np.ndarray]:
    """weights [batch, heads, tokens, frames] -> per row the cost matrix [rows[b], frames[b]] to warp.

    Each row keeps its first rows[b] token rows and frames[b] frames (its real audio, not the padding),
    normalised per head over the tokens (zero mean, unit deviation), median filtered, averaged over heads.
    On a GPU, rows go through together, GROUP_BYTES at a time (one copy to the host each, instead of a
    dozen small kernels and a copy per row); on a CPU, row by row.
    """
    pad = filter_width // 2
    out: list[np.ndarray | None] = [None] * len(rows)
    together = [b for b in range(len(rows)) if weights.is_cuda and filter_width > 1 and frames[b] > pad]
    for b in sorted(set(range(len(rows))).difference(together)):  # the others, row by row
        n, m = rows[b], frames[b]
        w = weights[b, :, :n, :m].float()
        std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
        w = (w - mean) / std.clamp(min=1e-10)
        out[b] = (-median_filter(w, filter_width).mean(dim=0)).cpu().numpy()
    if together:
        per_row = 12 * weights.shape[1] * max(rows[b] for b in together) * max(frames[b] for b in together) * \
            filter_width
        size = max(1, GROUP_BYTES // max(1, per_row))
        for at in range(0, len(together), size):
            group = together[at:at + size]
            for b, cost in zip(group, _aligned_together(weights, group, rows, frames, filter_width)):
                out[b] = cost
    return out  # type: ignore[return-value]


def _aligned_together(weights: torch.Tensor, group: Sequence[int], rows: Sequence[int], frames: Sequence[int],
                      filter_width: int) -> list[np.ndarray]:
    """alignment_matrix for the rows `group` at once: each normalised over its own tokens, its frames
    reflected at its own end before the median filter (every frames[b] > filter_width // 2)."""
    dev = weights.device
    n, m, pad = max(rows[b] for b in group), max(frames[b] for b in group), filter_width // 2
    index = torch.as_tensor(list(group), device=dev)
    w = weights.index_select(0, index)[:, :, :n, :m].float()
    count = torch.as_tensor([rows[b] for b in group], device=dev, dtype=w.dtype)
    keep = (torch.arange(n, device=dev)[None, :] < count[:, None])[:, None, :, None]  # [g, 1, n, 1]
    mean = (w * keep).sum(dim=-2, keepdim=True) / count[:, None, None, None]
    std = (((w - mean) * keep) ** 2).sum(dim=-2, keepdim=True).div(count[:, None, None, None]).sqrt()
    w = (w - mean) / std.clamp(min=1e-10)
    # Reflect each row at its own last frame (F.pad's "reflect"), then the median of each window.
    last = torch.as_tensor([frames[b] - 1 for b in group], device=dev)[:, None]
    at = (torch.arange(m + 2 * pad, device=dev)[None, :] - pad).abs()
    at = torch.where(at > last, 2 * last - at, at).clamp(min=0)
    at = torch.minimum(at, last)[:, None, None, :].expand(-1, w.shape[1], n, -1)
    w = window_medians(torch.gather(w, -1, at), filter_width)
    costs = (-w.mean(dim=1)).cpu().numpy()
    return [costs[i, :rows[b], :frames[b]] for i, b in enumerate(group)]


def _first_frames(x: np.ndarray) -> np.ndarray:
    """dtw_starts for one matrix, cell by cell (compiled by numba: about 0.6 ms for 100 tokens x 1500 frames)."""
    n, m = x.shape
    cost = np.full((n + 1, m + 1), np.inf, np.float32)
    cost[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            # OpenAI's rule, ties included: diagonal, else down, else right (at a tie, right's cost is kept)
            c = c0 if c0 < c1 and c0 < c2 else c1 if c1 < c0 and c1 < c2 else c2
            cost[i, j] = x[i - 1, j - 1] + c
    first = np.zeros(n, np.int64)
    i, j = n, m
    while i > 0 and j > 0:
        first[i - 1] = j - 1
        c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        if c0 < c1 and c0 < c2:
            i, j = i - 1, j - 1
        elif c1 < c0 and c1 < c2:
            i -= 1
        else:
            j -= 1
    return first


@functools.lru_cache(maxsize=1)
def _compiled_first_frames():
    """_first_frames compiled by numba (librosa's dependency), or None where numba is not installed: then the
    matrices are warped together in numpy, a few slices per step. Compiling takes about a second; the machine
    code is kept in engine/__pycache__ for the next process where that folder can be written."""
    try:
        import numba
    except ImportError:
        return None
    try:
        return numba.njit(nogil=True, cache=True)(_first_frames)
    except RuntimeError:  # numba found nowhere to keep it: compiled in every process
        return numba.njit(nogil=True)(_first_frames)


def dtw_starts(costs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """For each cost matrix [n, m], the frame where the cheapest monotone path first enters each row.

    Paths run from (0, 0) to (n - 1, m - 1) moving down, right or diagonally, with OpenAI's order of
    preference at ties (diagonal, then down, then right). Returns one int array of n start frames per matrix.
    With numba, each matrix cell by cell (compiled; matrices on threads side by side); without, the matrices
    are warped together, stored by anti-diagonal (d = i + j), so each step is a few slices (about 0.1 s for
    57 rows of 100 tokens x 1500 frames, against 33 ms compiled on one thread of the H200 host;
    tests/test_whisper_align.py holds the two to the same frames).
    """
    if not costs:
        return []
    compiled = _compiled_first_frames()
    if compiled is None:
        return _dtw_starts_numpy(costs)
    matrices = [np.ascontiguousarray(c, dtype=np.float32) for c in costs]
    workers = min(len(matrices), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if workers < 2:
        return [compiled(c) for c in matrices]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:  # compiled without the GIL: rows side by side
        return list(pool.map(compiled, matrices))


def _dtw_starts_numpy(costs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """dtw_starts without numba: every matrix at once, one anti-diagonal per step."""
    ns = np.array([c.shape[0] for c in costs])
    ms = np.array([c.shape[1] for c in costs])
    batch, n_max, m_max = len(costs), int(ns.max()), int(ms.max())
    diagonals = n_max + m_max + 1
    cost = np.zeros((n_max, m_max, batch), dtype=np.float32)
    for b, c in enumerate(costs):
        cost[: c.shape[0], : c.shape[1], b] = c
    # skew[d - 2, i - 1] is cost[i - 1, d - i - 1] (cell (i, j = d - i) of the accumulated matrix): a strided
    # view of `cost`, so that each anti-diagonal is one slice. Every offset it can form lies inside `cost`
    # (the largest is (n + m - 2) + (n - 1)(m - 1) = n m - 1 rows of `batch`); only valid cells are read.
    unit = cost.strides[2]
    skew = np.lib.stride_tricks.as_strided(cost, shape=(diagonals - 2, n_max, batch),
                                           strides=(batch * unit, (m_max - 1) * batch * unit, unit),
                                           writeable=False)
    # acc[d, i]: the cheapest path cost to cell (i, d - i); only the borders (i = 0, or j = 0) need a value
    # before the sweep, every other cell read is written by it first.
    acc = np.empty((diagonals, n_max + 1, batch), dtype=np.float32)
    acc[:, 0] = np.inf
    border = np.arange(1, n_max + 1)
    acc[border, border] = np.inf
    acc[0, 0] = 0.0
    best = np.empty((n_max + 1, batch), dtype=np.float32)
    for d in range(2, diagonals):  # cells with i + j = d depend on diagonals d - 1 and d - 2 only
        lo, hi = max(1, d - m_max), min(n_max, d - 1)
        if lo > hi:
            continue
        out = best[: hi - lo + 1]
        c0, c1, c2 = acc[d - 2, lo - 1:hi], acc[d - 1, lo - 1:hi], acc[d - 1, lo:hi + 1]
        # OpenAI's rule, ties included: diagonal, else down, else right (at a tie, right's cost is kept)
        np.copyto(out, c2)
        np.copyto(out, c1, where=(c1 < c0) & (c1 < c2))
        np.copyto(out, c0, where=(c0 < c1) & (c0 < c2))
        np.add(skew[d - 2, lo - 1:hi], out, out=acc[d, lo:hi + 1])
    # Walk every path back at once, each step re-deciding where the cell came from (the same comparisons
    # as on the way forward); the last cell reached in a row is where the path entered it.
    first = np.zeros((batch, n_max), dtype=np.int64)
    rows, at_i, at_j = np.arange(batch), ns.copy(), ms.copy()
    while True:
        live = (at_i > 0) & (at_j > 0)
        if not live.any():
            break
        b, ci, cj = rows[live], at_i[live], at_j[live]
        first[b, ci - 1] = cj - 1
        d = ci + cj
        c0, c1, c2 = acc[d - 2, ci - 1, b], acc[d - 1, ci - 1, b], acc[d - 1, ci, b]
        diagonal = (c0 < c1) & (c0 < c2)
        down = ~diagonal & (c1 < c0) & (c1 < c2)
        at_i[live] = ci - (diagonal | down)
        at_j[live] = cj - ~down
    return [first[b, : n] for b, n in enumerate(ns)]


def token_times(weights: torch.Tensor, counts: Sequence[int], frames: Sequence[int],
                filter_width: int = 7) -> list[np.ndarray]:
    """Start and end seconds of every text token, per row.

    weights [batch, heads, >= counts[b] + 1, >= frames[b]]: the alignment heads' cross-attention while
    reading the last start token and then the row's counts[b] text tokens (row k predicts token k; the
    last row predicts the end of text). Returns per row an array [counts[b], 2] of (start, end) in
    seconds from the chunk's start; a token ends where the next one starts.
    """
    rows = [int(c) + 1 for c in counts]
    frames = [max(1, int(f)) for f in frames]
    starts = dtw_starts(alignment_matrix(weights, rows, frames, filter_width))
    out = []
    for first, n in zip(starts, counts):
        at = first * FRAME_S
        out.append(np.stack([at[:n], at[1:n + 1]], axis=1) if n else np.zeros((0, 2)))
    return out
