"""Build a Sudoku data set in the reference HRM on-disk format, generated locally.

    python -m train.data.sudoku --output-dir data/sudoku --subsample-size 1000 --num-aug 8 \\
        --test-size 200 --min-difficulty 0 --seed 0

Each puzzle is dug out of a random full grid until no given can be removed without a second
solution appearing (so every puzzle has exactly one solution), then rated by the dead ends the
solver meets while proving that; --min-difficulty keeps only puzzles at least that hard. Training
puzzles get --num-aug transformed copies each (one group = one original and its copies); the test
split is not augmented. The set is written into a hidden sibling directory and renamed into place
at the end, so a crash never leaves a directory that looks complete.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from jobs.errors import UserError
from train.data import augment, solver

# Puzzles per work unit: small enough to show progress and balance two cores, big enough that the
# process pool's per-task cost stays negligible.
CHUNK_PUZZLES = 25
# When this many attempts in one work unit produced nothing hard enough, the filter is out of reach.
GIVE_UP_ATTEMPTS = 2000

FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")


@dataclass(frozen=True)
class Puzzles:
    puzzles: np.ndarray  # (n, 81) uint8, 0 = blank, 1..9 digits
    solutions: np.ndarray  # (n, 81) uint8
    difficulty: np.ndarray  # (n,) int32: solver dead ends
    attempts: int  # puzzles generated, including those the filter dropped


def _chunk(args: tuple[int, int, int, int, int]) -> tuple[list[tuple[list[int], list[int], int]], int]:
    """One work unit: `size` puzzles from its own seeded RNG, so the output does not depend on how
    many processes ran."""
    seed, index, size, min_difficulty, max_blanks = args
    rng = random.Random(f"sudoku:{seed}:{index}")
    found: list[tuple[list[int], list[int], int]] = []
    attempts = 0
    while len(found) < size:
        if attempts >= GIVE_UP_ATTEMPTS and not found:
            return found, -attempts  # negative: gave up
        attempts += 1
        full = solver.random_solution(rng)
        puzzle = solver.dig(full, rng, max_blanks)
        rating = solver.difficulty(puzzle)
        if rating >= min_difficulty:
            found.append((puzzle, full, rating))
    return found, attempts


def _run_chunks(seed: int, size: int, min_difficulty: int, max_blanks: int, workers: int,
                planned: int = sys.maxsize) -> Iterator[tuple[list, int]]:
    """Work units in order, computed `workers` at a time, endlessly; the caller stops. Beyond
    `planned` units (what the caller expects to need) one more is started only when none is left."""
    if workers <= 1:
        for i in range(sys.maxsize):
            yield _chunk((seed, i, size, min_difficulty, max_blanks))
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    # A bounded window of submitted units (Pool.imap would drain an endless task list at once);
    # taking results in submission order keeps the output deterministic.
    with multiprocessing.get_context(method).Pool(workers) as pool:
        window: deque = deque()
        i = 0
        while True:
            while len(window) < 2 * workers and (i < planned or not window):
                window.append(pool.apply_async(_chunk, ((seed, i, size, min_difficulty, max_blanks),)))
                i += 1
            yield window.popleft().get()


def generate(count: int, *, seed: int = 0, min_difficulty: int = 0, max_blanks: int = 81,
             workers: int = 1, log: Callable[[str], None] = print) -> Puzzles:
    """`count` distinct puzzles with one solution each and difficulty >= min_difficulty."""
    seen: set[bytes] = set()
    rows: list[tuple[list[int], list[int], int]] = []
    attempts = 0
    start = last = time.perf_counter()
    # Small requests (tests, smoke runs) should not pay for a whole work unit.
    size = min(CHUNK_PUZZLES, max(count, 1))
    # Without a filter every generated puzzle is kept, so the number of units needed is known.
    planned = -(-count // size) if min_difficulty == 0 else sys.maxsize
    chunks = _run_chunks(seed, size, min_difficulty, max_blanks, workers, planned)
    try:
        for found, tried in chunks:
            if tried < 0:
                raise UserError(f"no puzzle out of {-tried} generated reached difficulty {min_difficulty}",
                                key="--min-difficulty",
                                fix="lower --min-difficulty (unfiltered, about half the puzzles rate 0 "
                                    "and 1 in 30 rates 10 or more)")
            attempts += tried
            for puzzle, full, rating in found:
                key = bytes(puzzle)
                if key not in seen and len(rows) < count:
                    seen.add(key)
                    rows.append((puzzle, full, rating))
            now = time.perf_counter()
            if len(rows) >= count or now - last > 2.0:
                last = now
                log(f"sudoku: {len(rows)}/{count} puzzles, kept {len(rows) / max(attempts, 1):.0%} "
                    f"of {attempts} generated, {now - start:.1f} s")
            if len(rows) >= count:
                break
    finally:
        chunks.close()  # stops the pool
    return Puzzles(puzzles=np.array([r[0] for r in rows], dtype=np.uint8).reshape(-1, 81),
                   solutions=np.array([r[1] for r in rows], dtype=np.uint8).reshape(-1, 81),
                   difficulty=np.array([r[2] for r in rows], dtype=np.int32),
                   attempts=attempts)


def split_arrays(puzzles: np.ndarray, solutions: np.ndarray, num_aug: int,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The reference arrays for one split: every example is its own puzzle (one example per
    puzzle), every original with its augmentations one group. Tokens are value + 1: 0 pad,
    1 blank, 2..10 digits 1..9."""
    inputs, labels = augment.augment(puzzles, solutions, num_aug, rng)
    n_examples = len(inputs)
    return {
        "inputs": inputs + np.uint8(1),
        "labels": labels + np.uint8(1),
        "puzzle_identifiers": np.zeros(n_examples, dtype=np.int32),
        "puzzle_indices": np.arange(n_examples + 1, dtype=np.int32),
        "group_indices": np.arange(0, n_examples + 1, 1 + num_aug, dtype=np.int32),
    }


def metadata(arrays: dict[str, np.ndarray]) -> dict:
    n_puzzles = len(arrays["puzzle_indices"]) - 1
    return {
        "pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0,
        "vocab_size": 11, "seq_len": 81, "num_puzzle_identifiers": 1,
        "total_groups": len(arrays["group_indices"]) - 1,
        "mean_puzzle_examples": len(arrays["inputs"]) / max(n_puzzles, 1),
        "sets": ["all"],
    }


def write_split(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    directory.mkdir(parents=True)
    for name in FIELDS:
        np.save(directory / f"all__{name}.npy", arrays[name])
    (directory / "dataset.json").write_text(json.dumps(metadata(arrays), indent=1) + "\n")


def _fsync_tree(root: Path) -> None:
    """Flush every file before the rename publishes the directory."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


# What decides a data set's content (workers, output dir and --overwrite do not).
_CONTENT_KEYS = ("subsample_size", "num_aug", "min_difficulty", "max_blanks", "test_size", "seed")


def _built_with(output: Path) -> dict | None:
    """The generation config of a finished data set at `output`, or None."""
    try:
        return json.loads((output / "generation.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _same_content(output: Path, config: "BuildConfig") -> bool:
    built = _built_with(output)
    # A key older sets lack had its default then.
    return built is not None and all(built.get(k, getattr(BuildConfig, k)) == getattr(config, k)
                                     for k in _CONTENT_KEYS)


def _exists_error(output: Path) -> UserError:
    return UserError(f"{output} already exists and was built with other settings", key="--output-dir",
                     fix="pass --overwrite to replace it, or choose another --output-dir")


def _publish(tmp: Path, output: Path, config: "BuildConfig") -> None:
    if output.exists() and config.overwrite:
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, old)
        os.replace(tmp, output)
        shutil.rmtree(old)
        return
    try:
        os.replace(tmp, output)  # fails if another build published first
    except OSError:
        if not _same_content(output, config):
            raise _exists_error(output) from None
        shutil.rmtree(tmp)  # a concurrent build of the same set won the race: same bytes


@dataclass(frozen=True)
class BuildConfig:
    output_dir: str
    subsample_size: int = 1000
    num_aug: int = 0
    min_difficulty: int = 0
    max_blanks: int = 81
    test_size: int = 200
    seed: int = 0
    workers: int = 1
    overwrite: bool = False

    def check(self) -> None:
        for key, value, least in (("--subsample-size", self.subsample_size, 1), ("--num-aug", self.num_aug, 0),
                                  ("--min-difficulty", self.min_difficulty, 0), ("--max-blanks", self.max_blanks, 1),
                                  ("--test-size", self.test_size, 1),
                                  ("--workers", self.workers, 1)):
            if value < least:
                raise UserError(f"got {value}, which is below {least}", key=key,
                                fix=f"pass an integer >= {least}")


def build(config: BuildConfig, log: Callable[[str], None] = print) -> dict:
    """Generate, augment and write the whole data set; returns the summary written beside it."""
    config.check()
    output = Path(config.output_dir)
    if output.is_dir() and not any(output.iterdir()):
        output.rmdir()  # an empty directory made ahead of time is no data set: take its place
    if output.exists() and not config.overwrite:
        # Same settings, same bytes (generation is deterministic): re-running is a no-op, so a
        # demo or every task of a sweep can ask for the set it needs.
        if _same_content(output, config):
            log(f"sudoku: {output} is already built with these settings")
            return json.loads((output / "generation.json").read_text())
        raise _exists_error(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    total = config.subsample_size + config.test_size
    pool = generate(total, seed=config.seed, min_difficulty=config.min_difficulty,
                    max_blanks=config.max_blanks, workers=config.workers, log=log)
    t1 = time.perf_counter()
    # Train and test come from one stream of distinct puzzles, so no test puzzle is seen in training.
    n = config.subsample_size
    rng = np.random.default_rng([config.seed, 1])
    train = split_arrays(pool.puzzles[:n], pool.solutions[:n], config.num_aug, rng)
    test = split_arrays(pool.puzzles[n:], pool.solutions[n:], 0, rng)
    t2 = time.perf_counter()
    summary = {
        "generator": "train.data.sudoku", "config": asdict(config),
        "train_puzzles": n, "train_examples": len(train["inputs"]),
        "test_puzzles": len(pool.puzzles) - n,
        "puzzles_generated": pool.attempts,
        "mean_givens": float((pool.puzzles > 0).sum(axis=1).mean()),
        "difficulty_histogram": {str(k): v for k, v in sorted(Counter(pool.difficulty.tolist()).items())},
        "seconds": {"generate": round(t1 - t0, 3), "augment": round(t2 - t1, 3)},
    }
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write_split(tmp / "train", train)
        write_split(tmp / "test", test)
        (tmp / "identifiers.json").write_text(json.dumps(["<blank>"]) + "\n")
        summary["seconds"]["write"] = round(time.perf_counter() - t2, 3)
        (tmp / "generation.json").write_text(json.dumps(summary, indent=1) + "\n")
        _fsync_tree(tmp)
        _publish(tmp, output, config)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"sudoku: wrote {output} ({summary['train_examples']} train examples in {n} groups, "
        f"{summary['test_puzzles']} test puzzles) in {time.perf_counter() - t0:.1f} s")
    return summary


def _usable_cpus() -> int:
    """CPUs this process may run on: inside a Slurm allocation that is the allocation, not the node."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_args(argv: list[str] | None = None) -> BuildConfig:
    p = argparse.ArgumentParser(prog="python -m train.data.sudoku", description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", required=True, help="directory to create (the data_path for training)")
    p.add_argument("--subsample-size", type=int, default=1000, help="original training puzzles (groups)")
    p.add_argument("--num-aug", type=int, default=0, help="augmented copies per training puzzle")
    p.add_argument("--min-difficulty", type=int, default=0,
                   help="keep puzzles whose proof of uniqueness meets at least this many dead ends")
    p.add_argument("--max-blanks", type=int, default=81,
                   help="empty at most this many cells (easy sets for smoke runs; default: minimal puzzles)")
    p.add_argument("--test-size", type=int, default=200, help="test puzzles (never augmented)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=_usable_cpus(), help="generator processes (default: CPUs usable here)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    a = p.parse_args(argv)
    return BuildConfig(output_dir=a.output_dir, subsample_size=a.subsample_size, num_aug=a.num_aug,
                       min_difficulty=a.min_difficulty, max_blanks=a.max_blanks, test_size=a.test_size, seed=a.seed,
                       workers=a.workers, overwrite=a.overwrite)


def main(argv: list[str] | None = None) -> int:
    try:
        build(parse_args(argv), log=lambda line: print(line, flush=True))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
