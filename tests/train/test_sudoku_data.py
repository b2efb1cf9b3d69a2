"""Sudoku generation: uniqueness (checked by an independent brute-force counter), validity,
difficulty filter, augmentation, and the on-disk format with its crash safety."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from jobs.errors import UserError
from train.data import augment, solver, sudoku

# A well-known puzzle with one solution, and its solution.
PUZZLE = "530070000600195000098000060800060003400803001700020006060000280000419005000080079"
SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


def grid(text: str) -> list[int]:
    return [int(ch) for ch in text]


def brute_count(puzzle: list[int] | np.ndarray, limit: int = 2) -> int:
    """Independent of train.data.solver: sets of used digits per row, column and box, plain
    depth-first search on the cell with the fewest options, no propagation."""
    g = [int(v) for v in puzzle]
    rows, cols, boxes = [set() for _ in range(9)], [set() for _ in range(9)], [set() for _ in range(9)]
    where = [(i // 9, i % 9, i // 27 * 3 + i % 9 // 3) for i in range(81)]
    for i, d in enumerate(g):
        if d:
            r, c, b = where[i]
            if d in rows[r] | cols[c] | boxes[b]:
                return 0
            rows[r].add(d), cols[c].add(d), boxes[b].add(d)
    digits = set(range(1, 10))

    def count(empties: list[int]) -> int:
        if not empties:
            return 1
        best, opts = -1, None
        for i in empties:
            r, c, b = where[i]
            o = digits - rows[r] - cols[c] - boxes[b]
            if opts is None or len(o) < len(opts):
                best, opts = i, o
                if len(o) <= 1:
                    break
        rest = [i for i in empties if i != best]
        r, c, b = where[best]
        found = 0
        for d in opts:
            rows[r].add(d), cols[c].add(d), boxes[b].add(d)
            found += count(rest)
            rows[r].discard(d), cols[c].discard(d), boxes[b].discard(d)
            if found >= limit:
                break
        return min(found, limit)

    return count([i for i in range(81) if not g[i]])


def valid(sol) -> bool:
    a = np.asarray(sol).reshape(9, 9)
    boxes = a.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(9, 9)
    return all(sorted(x.tolist()) == list(range(1, 10)) for m in (a, a.T, boxes) for x in m)


@pytest.fixture(scope="module")
def pool() -> sudoku.Puzzles:
    return sudoku.generate(40, seed=7, workers=1, log=lambda _: None)


# --- solver ---------------------------------------------------------------------------------------

def test_solver_solves_known_puzzle_and_counts_solutions():
    stats = solver.solve(grid(PUZZLE))
    assert ["".join(map(str, s)) for s in stats.solutions] == [SOLUTION]
    # Empty a full grid's 4-cell rectangle (two rows, two columns, two boxes, digits swappable):
    # then exactly two solutions exist.
    full = grid(SOLUTION)
    a = np.array(full).reshape(9, 9)
    for r1 in range(9):
        for r2 in range(r1 + 1, 9):
            for c1 in range(9):
                for c2 in range(c1 + 1, 9):
                    if (r1 // 3 == r2 // 3) != (c1 // 3 == c2 // 3) and a[r1, c1] == a[r2, c2] \
                            and a[r1, c2] == a[r2, c1]:
                        holed = full.copy()
                        for r, c in ((r1, c1), (r1, c2), (r2, c1), (r2, c2)):
                            holed[r * 9 + c] = 0
                        assert len(solver.solve(holed, limit=2).solutions) == 2 == brute_count(holed)
                        return
    pytest.fail("no swappable rectangle in the test grid")


def test_solver_rejects_clashing_givens():
    bad = grid(PUZZLE)
    bad[1] = 5  # row 0 already has a 5
    assert len(solver.solve(bad, limit=2).solutions) == 0


def test_random_solutions_are_valid_and_differ():
    rng = random.Random(1)
    grids = [solver.random_solution(rng) for _ in range(20)]
    assert all(valid(g) for g in grids)
    assert len({tuple(g) for g in grids}) == 20
    assert not valid(grid(PUZZLE))


# --- generated puzzles ----------------------------------------------------------------------------

def test_generated_puzzles_have_exactly_one_solution(pool):
    assert pool.puzzles.shape == (40, 81) and pool.puzzles.dtype == np.uint8
    for puzzle, solution in zip(pool.puzzles[:10], pool.solutions[:10]):
        assert brute_count(puzzle) == 1
        assert valid(solution)
        givens = puzzle > 0
        assert (puzzle[givens] == solution[givens]).all()
    assert len({p.tobytes() for p in pool.puzzles}) == len(pool.puzzles)


def test_generated_puzzles_are_minimal(pool):
    # dig() keeps a given only when removing it would allow a second solution.
    for puzzle in pool.puzzles[:2]:
        for cell in np.flatnonzero(puzzle):
            holed = puzzle.copy()
            holed[cell] = 0
            assert brute_count(holed) == 2


def test_difficulty_filter_keeps_only_hard_enough(pool):
    ratings = pool.difficulty.tolist()
    assert ratings == [solver.difficulty(p.tolist()) for p in pool.puzzles]
    assert min(ratings) == 0 and max(ratings) >= 2  # a spread to filter from
    hard = sudoku.generate(8, seed=7, min_difficulty=2, workers=1, log=lambda _: None)
    assert (hard.difficulty >= 2).all()
    assert all(solver.difficulty(p.tolist()) >= 2 for p in hard.puzzles)
    assert hard.attempts > 8  # easy ones were generated and dropped


def test_generation_is_deterministic_whatever_the_worker_count():
    one = sudoku.generate(30, seed=3, workers=1, log=lambda _: None)
    two = sudoku.generate(30, seed=3, workers=2, log=lambda _: None)
    assert np.array_equal(one.puzzles, two.puzzles) and np.array_equal(one.solutions, two.solutions)


# --- augmentation ---------------------------------------------------------------------------------

def test_augmentation_keeps_puzzles_valid_and_paired(pool):
    rng = np.random.default_rng(0)
    n, k = 10, 6
    inputs, labels = augment.augment(pool.puzzles[:n], pool.solutions[:n], k, rng)
    assert inputs.shape == labels.shape == (n * (1 + k), 81)
    inputs, labels = inputs.reshape(n, 1 + k, 81), labels.reshape(n, 1 + k, 81)
    assert np.array_equal(inputs[:, 0], pool.puzzles[:n])  # originals first, untouched
    for i in range(n):
        for j in range(1, 1 + k):
            p, s = inputs[i, j], labels[i, j]
            assert valid(s)
            givens = p > 0
            assert givens.sum() == (pool.puzzles[i] > 0).sum()
            assert (p[givens] == s[givens]).all()
            assert not np.array_equal(s, pool.solutions[i])
    assert brute_count(inputs[0, 1]) == 1


def test_transforms_cover_every_kind_of_move():
    rng = np.random.default_rng(1)
    t = augment.random_transforms(400, rng)
    assert (t.digit_map[:, 0] == 0).all()
    assert (np.sort(t.digit_map[:, 1:], axis=1) == np.arange(1, 10)).all()
    assert (np.sort(t.source, axis=1) == np.arange(81)).all()  # a bijection of cells
    moved = t.source  # moved[k, new cell] = old cell
    # Without a transpose the new first row reads one old row; with it, one old column.
    plain = (moved[:, :9] // 9 == moved[:, :1] // 9).all(axis=1)
    assert 100 < plain.sum() < 300
    # The old row (or column) feeding each new row: each new band comes whole from one old band.
    feeding = np.where(plain[:, None], moved[:, ::9] // 9, moved[:, ::9] % 9)
    bands = feeding.reshape(-1, 3, 3) // 3
    assert (bands == bands[:, :, :1]).all()
    assert len({tuple(r) for r in feeding}) > 50


# --- on-disk format -------------------------------------------------------------------------------

def test_build_writes_the_reference_format(tmp_path):
    out = tmp_path / "sudoku"
    summary = sudoku.build(sudoku.BuildConfig(output_dir=str(out), subsample_size=12, num_aug=3, test_size=5,
                                              seed=2), log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sudoku"]  # no tmp dir left over
    assert json.loads((out / "identifiers.json").read_text()) == ["<blank>"]
    for split, groups, per_group in (("train", 12, 4), ("test", 5, 1)):
        meta = json.loads((out / split / "dataset.json").read_text())
        assert meta == {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 11,
                        "seq_len": 81, "num_puzzle_identifiers": 1, "total_groups": groups,
                        "mean_puzzle_examples": 1.0, "sets": ["all"]}
        arr = {f: np.load(out / split / f"all__{f}.npy") for f in sudoku.FIELDS}
        n = groups * per_group
        assert arr["inputs"].shape == arr["labels"].shape == (n, 81)
        assert arr["inputs"].min() >= 1 and arr["inputs"].max() <= 10
        assert arr["labels"].min() >= 2 and arr["labels"].max() <= 10  # never the ignore id 0
        assert arr["puzzle_identifiers"].tolist() == [0] * n
        assert arr["puzzle_indices"].tolist() == list(range(n + 1))
        assert arr["group_indices"].tolist() == list(range(0, n + 1, per_group))
        for inp, lab in zip(arr["inputs"] - 1, arr["labels"] - 1):
            assert valid(lab) and ((inp == 0) | (inp == lab)).all()
    train = np.load(out / "train" / "all__inputs.npy")[::4]
    test = np.load(out / "test" / "all__inputs.npy")
    assert not {r.tobytes() for r in train} & {r.tobytes() for r in test}
    assert summary["train_examples"] == 48 and summary["seconds"]["generate"] >= 0
    with pytest.raises(UserError, match="already exists"):
        sudoku.build(sudoku.BuildConfig(output_dir=str(out), subsample_size=2, test_size=1), log=lambda _: None)
    # The same settings again: nothing to do, nothing rewritten.
    stamp = (out / "train" / "all__inputs.npy").stat().st_mtime_ns
    lines = []
    again = sudoku.build(sudoku.BuildConfig(output_dir=str(out), subsample_size=12, num_aug=3, test_size=5, seed=2,
                                            workers=2), log=lines.append)
    assert again == json.loads((out / "generation.json").read_text()) and "already built" in lines[0]
    assert (out / "train" / "all__inputs.npy").stat().st_mtime_ns == stamp


def test_build_overwrites_only_when_asked(tmp_path):
    out = tmp_path / "d"
    out.mkdir()  # an empty directory is no data set: building into it is fine
    cfg = dict(output_dir=str(out), subsample_size=2, test_size=1)
    sudoku.build(sudoku.BuildConfig(**cfg, seed=1), log=lambda _: None)
    before = np.load(out / "train" / "all__inputs.npy")
    sudoku.build(sudoku.BuildConfig(**cfg, seed=2, overwrite=True), log=lambda _: None)
    assert not np.array_equal(before, np.load(out / "train" / "all__inputs.npy"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_a_crash_while_writing_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    real = sudoku.write_split

    def crash(directory: Path, arrays):
        real(directory, arrays)
        if directory.name == "test":
            raise OSError("disk full")

    monkeypatch.setattr(sudoku, "write_split", crash)
    with pytest.raises(OSError, match="disk full"):
        sudoku.build(sudoku.BuildConfig(output_dir=str(tmp_path / "d"), subsample_size=2, test_size=1),
                     log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert sudoku.main(["--output-dir", str(tmp_path / "x"), "--num-aug", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--num-aug" in err and ">= 0" in err
    assert sudoku.main(["--output-dir", str(tmp_path / "x"), "--subsample-size", "3", "--test-size", "2",
                        "--num-aug", "1", "--workers", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "x" / "train" / "dataset.json").is_file()


def test_an_unreachable_difficulty_is_a_user_error(monkeypatch):
    monkeypatch.setattr(sudoku, "GIVE_UP_ATTEMPTS", 3)
    with pytest.raises(UserError, match="--min-difficulty"):
        sudoku.generate(5, min_difficulty=10**6, workers=1, log=lambda _: None)


def test_max_blanks_makes_easy_puzzles_with_one_solution():
    easy = sudoku.generate(20, seed=3, max_blanks=10, workers=1, log=lambda _: None)
    blanks = (easy.puzzles == 0).sum(axis=1)
    assert blanks.max() <= 10 and blanks.min() >= 1
    for puzzle, full in zip(easy.puzzles.tolist(), easy.solutions.tolist()):
        assert all(p in (0, f) for p, f in zip(puzzle, full))
        assert len(solver.solve(puzzle, limit=2).solutions) == 1
