"""Sudoku symmetries, vectorised over many grids at once.

A transform relabels digits (a permutation of 1..9, blank stays 0), optionally transposes, shuffles
the three bands and the rows inside each band, and the three stacks and the columns inside each
stack. Every such transform maps a valid puzzle to a valid puzzle and its solution to the
transformed solution, so applying the same transform to both keeps them paired.
Grids are (n, 81) arrays of values 0..9 (0 = blank), row-major.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Limits memory of one vectorised step: (CHUNK, 81) int64 gather indices is about 40 MB.
CHUNK = 65536


@dataclass(frozen=True)
class Transforms:
    """n transforms: digit_map[k] maps value -> value (digit_map[k, 0] == 0); source[k, cell] is the
    cell of the original grid that lands on `cell`."""

    digit_map: np.ndarray  # (n, 10)
    source: np.ndarray  # (n, 81)


def _perm_in_blocks(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 9) permutations of 0..8 that move whole blocks of 3 and shuffle within each block."""
    blocks = np.argsort(rng.random((n, 3)), axis=1)  # which old block goes to new block position
    within = np.argsort(rng.random((n, 3, 3)), axis=2)
    return (blocks[:, :, None] * 3 + within).reshape(n, 9)


def random_transforms(n: int, rng: np.random.Generator) -> Transforms:
    digits = np.argsort(rng.random((n, 9)), axis=1) + 1
    digit_map = np.concatenate([np.zeros((n, 1), dtype=np.int64), digits], axis=1)
    rows = _perm_in_blocks(n, rng)
    cols = _perm_in_blocks(n, rng)
    transpose = rng.random(n) < 0.5
    # New cell (i, j) reads old cell (rows[i], cols[j]), or (cols[j], rows[i]) when transposed.
    plain = rows[:, :, None] * 9 + cols[:, None, :]
    flipped = cols[:, None, :] * 9 + rows[:, :, None]
    source = np.where(transpose[:, None, None], flipped, plain).reshape(n, 81)
    return Transforms(digit_map=digit_map, source=source)


def apply(grids: np.ndarray, t: Transforms) -> np.ndarray:
    """Apply transform k to grids[k]; keeps the dtype of `grids`."""
    moved = np.take_along_axis(grids, t.source, axis=1)
    return np.take_along_axis(t.digit_map, moved.astype(np.int64), axis=1).astype(grids.dtype)


def augment(puzzles: np.ndarray, solutions: np.ndarray, num_aug: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each puzzle followed by `num_aug` transformed copies: returns (n * (1 + num_aug), 81) arrays
    for puzzles and solutions, grouped per original (the original first), as the loader expects."""
    n = len(puzzles)
    out_p = np.empty((n, 1 + num_aug, 81), dtype=puzzles.dtype)
    out_s = np.empty((n, 1 + num_aug, 81), dtype=solutions.dtype)
    out_p[:, 0] = puzzles
    out_s[:, 0] = solutions
    if num_aug:
        per_chunk = max(1, CHUNK // num_aug)
        for start in range(0, n, per_chunk):
            stop = min(n, start + per_chunk)
            k = (stop - start) * num_aug
            t = random_transforms(k, rng)
            out_p[start:stop, 1:] = apply(np.repeat(puzzles[start:stop], num_aug, axis=0), t).reshape(-1, num_aug, 81)
            out_s[start:stop, 1:] = apply(np.repeat(solutions[start:stop], num_aug, axis=0), t).reshape(-1, num_aug, 81)
    return out_p.reshape(-1, 81), out_s.reshape(-1, 81)
