"""A bitmask Sudoku solver: constraint propagation (naked + hidden singles) and backtracking.

A grid is a list of 81 ints, row-major, 0 for an empty cell and 1..9 for a digit. Each row, column
and box keeps a 9-bit mask of the digits placed in it, so a cell's candidates are one OR and one
NOT away; that keeps the pure-Python inner loop short enough to dig about 100 minimal puzzles a
second on one core. The solver serves three jobs: making random full grids, proving a puzzle has exactly one
solution, and rating how much search a puzzle needs (its difficulty).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

ALL = 0x1FF  # digits 1..9 as bits 0..8
_ROW = tuple(i // 9 for i in range(81))
_COL = tuple(i % 9 for i in range(81))
_BOX = tuple((i // 27) * 3 + (i % 9) // 3 for i in range(81))
# The 27 units as (kind, index, cells); kind 0 = row, 1 = column, 2 = box.
_UNITS = (tuple((0, r, tuple(r * 9 + c for c in range(9))) for r in range(9))
          + tuple((1, c, tuple(r * 9 + c for r in range(9))) for c in range(9))
          + tuple((2, b, tuple(i for i in range(81) if _BOX[i] == b)) for b in range(9)))
_CELLS = tuple((i, _ROW[i], _COL[i], _BOX[i]) for i in range(81))
_PEERS = tuple(tuple(j for j in range(81) if j != i and (_ROW[j] == _ROW[i] or _COL[j] == _COL[i]
                                                           or _BOX[j] == _BOX[i])) for i in range(81))
_NO_BAN = (0,) * 81


@dataclass
class SearchStats:
    """What a search did: dead ends met (contradictions) and guesses made (branch assignments)."""

    dead_ends: int = 0
    guesses: int = 0
    solutions: list[list[int]] = field(default_factory=list)


def _search(grid: list[int], masks: list[list[int]], ban: list[int] | tuple[int, ...], limit: int,
            stats: SearchStats, rng: random.Random | None) -> None:
    """Depth-first search that appends up to `limit` solutions to stats.solutions.

    masks = [rows, cols, boxes] placed-digit masks; ban[i] holds digits cell i may not take, which
    turns "is there a solution other than the one I know?" into a plain search. Mutates its
    arguments; callers pass copies. Globals are bound to locals: this loop is the generator's cost.
    """
    rows, cols, boxes = masks
    cells_rcb, units, peers = _CELLS, _UNITS, _PEERS
    cand = [0] * 81
    while True:
        changed = False
        best, best_n, best_m = -1, 10, 0
        # Pass 1: naked singles, fresh candidates, and the most constrained cell to branch on.
        for i, r, c, b in cells_rcb:
            if grid[i]:
                continue
            m = ALL & ~(rows[r] | cols[c] | boxes[b] | ban[i])
            if not m:
                stats.dead_ends += 1
                return
            if not m & (m - 1):
                grid[i] = m.bit_length()
                rows[r] |= m
                cols[c] |= m
                boxes[b] |= m
                changed = True
            else:
                cand[i] = m
                n = m.bit_count()
                if n < best_n:
                    best, best_n, best_m = i, n, m
        if changed:
            continue
        if best < 0:
            stats.solutions.append(grid[:])
            return
        # Pass 2: hidden singles (a digit that fits only one cell of a unit). Candidates are fresh
        # here because pass 1 placed nothing; each placement below strikes its digit from peers.
        for kind, index, ucells in units:
            placed = masks[kind][index]
            once = twice = 0
            for i in ucells:
                if not grid[i]:
                    m = cand[i]
                    twice |= once & m
                    once |= m
            if (once | placed) != ALL:  # some digit has no place left in this unit
                stats.dead_ends += 1
                return
            hidden = once & ~twice & ~placed
            if not hidden:
                continue
            for i in ucells:
                if grid[i]:
                    continue
                m = cand[i] & hidden
                if not m:
                    continue
                if m & (m - 1):  # two digits that both must go in this one cell
                    stats.dead_ends += 1
                    return
                grid[i] = m.bit_length()
                rows[_ROW[i]] |= m
                cols[_COL[i]] |= m
                boxes[_BOX[i]] |= m
                for p in peers[i]:
                    cand[p] &= ~m
                changed = True
        if not changed:
            break
    # Branch on the cell with the fewest candidates.
    bits = []
    m = best_m
    while m:
        bit = m & -m
        bits.append(bit)
        m ^= bit
    if rng is not None:
        rng.shuffle(bits)
    r, c, b = _ROW[best], _COL[best], _BOX[best]
    for bit in bits:
        g2 = grid[:]
        g2[best] = bit.bit_length()
        rows2, cols2, boxes2 = rows[:], cols[:], boxes[:]
        rows2[r] |= bit
        cols2[c] |= bit
        boxes2[b] |= bit
        stats.guesses += 1
        _search(g2, [rows2, cols2, boxes2], ban, limit, stats, rng)
        if len(stats.solutions) >= limit:
            return


def _masks(grid: list[int]) -> list[list[int]] | None:
    """Placed-digit masks of a grid, or None when its givens already clash."""
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for i, d in enumerate(grid):
        if d:
            bit = 1 << (d - 1)
            if (rows[_ROW[i]] | cols[_COL[i]] | boxes[_BOX[i]]) & bit:
                return None
            rows[_ROW[i]] |= bit
            cols[_COL[i]] |= bit
            boxes[_BOX[i]] |= bit
    return [rows, cols, boxes]


def solve(grid: list[int], *, limit: int = 2, rng: random.Random | None = None) -> SearchStats:
    """Search for up to `limit` solutions. With limit=2 on a puzzle that has one solution the whole
    tree is explored, so stats.dead_ends does not depend on the order digits are tried in."""
    stats = SearchStats()
    masks = _masks(grid)
    if masks is None:
        return stats
    _search(list(grid), masks, _NO_BAN, limit, stats, rng)
    return stats


def difficulty(grid: list[int]) -> int:
    """Dead ends the solver meets while proving the solution unique: 0 = propagation alone solves it."""
    return solve(grid, limit=2).dead_ends


def random_solution(rng: random.Random) -> list[int]:
    """A random valid full grid: the three diagonal boxes share no row, column or box, so any
    digits there are consistent (and always completable); a search with shuffled branches fills the
    rest, about 3x faster than a search from the empty grid."""
    grid = [0] * 81
    for box in (0, 4, 8):
        digits = list(range(1, 10))
        rng.shuffle(digits)
        for cell, d in zip(_UNITS[18 + box][2], digits):
            grid[cell] = d
    stats = SearchStats()
    masks = _masks(grid)
    assert masks is not None  # diagonal boxes never clash
    _search(grid, masks, _NO_BAN, 1, stats, rng)
    return stats.solutions[0]


def has_other_solution(puzzle: list[int], cell: int, digit: int) -> bool:
    """True when `puzzle` has a solution whose `cell` is not `digit` (cell must be empty)."""
    masks = _masks(puzzle)
    if masks is None:
        return False
    ban = [0] * 81
    ban[cell] = 1 << (digit - 1)
    stats = SearchStats()
    _search(list(puzzle), masks, ban, 1, stats, None)
    return bool(stats.solutions)


def dig(solution: list[int], rng: random.Random, max_blanks: int = 81) -> list[int]:
    """Empty cells of a full grid in random order, keeping each removal only while the puzzle keeps
    exactly one solution: the result is a minimal puzzle (no given can be removed), or, with
    `max_blanks`, an easier one that stops once that many cells are empty."""
    puzzle = list(solution)
    order = list(range(81))
    rng.shuffle(order)
    blanks = 0
    for cell in order:
        if blanks >= max_blanks:
            break
        digit = puzzle[cell]
        puzzle[cell] = 0
        # Removing one given can only add solutions that differ at that cell, so one search with
        # that digit banned there decides uniqueness.
        if has_other_solution(puzzle, cell, digit):
            puzzle[cell] = digit
        else:
            blanks += 1
    return puzzle
