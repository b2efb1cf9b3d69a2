"""PuzzleDataset: shapes and dtypes, label mapping, test-mode coverage, rank splits, sampling like
the reference, and exact resume mid-iteration."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.errors import UserError
from train.data import sudoku
from train.data.dataset import IGNORE_LABEL_ID, PuzzleDataset


@pytest.fixture(scope="module")
def sudoku_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "sudoku"
    sudoku.build(sudoku.BuildConfig(output_dir=str(out), subsample_size=40, num_aug=2, test_size=23, seed=5),
                 log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def multi_dir(tmp_path_factory) -> Path:
    """A synthetic set in the same format where groups hold several puzzles and puzzles several
    examples (as ARC-style sets do), with some label cells at the ignore id 0. Each example's first
    input token is its example index, so batches can be traced back."""
    root = tmp_path_factory.mktemp("data") / "multi"
    rng = np.random.default_rng(0)
    group_sizes = rng.integers(1, 4, size=30)  # puzzles per group
    n_puzzles = int(group_sizes.sum())
    example_sizes = rng.integers(1, 5, size=n_puzzles)  # examples per puzzle
    n = int(example_sizes.sum())
    inputs = rng.integers(1, 11, size=(n, 6)).astype(np.int32)
    inputs[:, 0] = np.arange(n)
    labels = rng.integers(0, 11, size=(n, 6)).astype(np.int32)
    arrays = {"inputs": inputs, "labels": labels,
              "puzzle_identifiers": np.arange(1, n_puzzles + 1, dtype=np.int32),
              "puzzle_indices": np.concatenate([[0], np.cumsum(example_sizes)]).astype(np.int32),
              "group_indices": np.concatenate([[0], np.cumsum(group_sizes)]).astype(np.int32)}
    meta = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 11, "seq_len": 6,
            "num_puzzle_identifiers": n_puzzles + 1, "total_groups": 30,
            "mean_puzzle_examples": n / n_puzzles, "sets": ["all"]}
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for name, value in arrays.items():
            np.save(root / split / f"all__{name}.npy", value)
        (root / split / "dataset.json").write_text(json.dumps(meta))
    return root


def take(ds: PuzzleDataset, n: int | None = None) -> list[tuple[str, dict[str, torch.Tensor], int]]:
    out = []
    for item in ds:
        out.append(item)
        if n is not None and len(out) == n:
            break
    return out


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and x[2] == y[2] and all(torch.equal(x[1][k], y[1][k]) for k in x[1]) for x, y in zip(a, b))


def test_train_batches_have_the_contract_shapes(sudoku_dir):
    ds = PuzzleDataset(sudoku_dir, "train", 16, seed=1)
    assert ds.metadata.seq_len == 81 and ds.metadata.vocab_size == 11 and ds.metadata.total_groups == 40
    batches = take(ds)
    assert len(batches) == 40 // 16  # one example per group per epoch, incomplete last batch dropped
    for set_name, batch, effective in batches:
        assert set_name == "all" and effective == 16
        assert batch["inputs"].shape == batch["labels"].shape == (16, 81)
        assert batch["puzzle_identifiers"].shape == (16,)
        assert {v.dtype for v in batch.values()} == {torch.int32}
        assert (batch["labels"] >= 2).all()  # Sudoku labels are digits: nothing to ignore
        # Each example is one of a group's puzzles: givens agree with the solution.
        inp, lab = batch["inputs"], batch["labels"]
        assert ((inp == 1) | (inp == lab)).all()


def test_train_samples_one_example_per_group_and_reshuffles(sudoku_dir):
    groups = np.load(sudoku_dir / "train" / "all__group_indices.npy")
    inputs = np.load(sudoku_dir / "train" / "all__inputs.npy")
    row_of = {r.tobytes(): i for i, r in enumerate(inputs)}
    ds = PuzzleDataset(sudoku_dir, "train", 8, seed=3, epochs_per_iter=2)
    epochs = []
    for _ in range(2):
        rows = [row_of[r.numpy().astype(np.uint8).tobytes()] for _, b, _ in take(ds) for r in b["inputs"]]
        assert len(rows) == 80  # 2 epochs x 40 groups, 80 divisible by 8
        owners = np.searchsorted(groups, rows, side="right") - 1
        assert np.bincount(owners, minlength=40).tolist() == [2] * 40  # each group once per epoch
        epochs.append(rows)
    assert epochs[0] != epochs[1]
    again = PuzzleDataset(sudoku_dir, "train", 8, seed=3, epochs_per_iter=2)
    assert same(take(again), take(PuzzleDataset(sudoku_dir, "train", 8, seed=3, epochs_per_iter=2)))
    assert not same(take(PuzzleDataset(sudoku_dir, "train", 8, seed=4)), take(PuzzleDataset(sudoku_dir, "train", 8, seed=3)))


def test_test_mode_walks_every_example_once_and_pads(sudoku_dir):
    expected = np.load(sudoku_dir / "test" / "all__inputs.npy").astype(np.int32)
    for world in (1, 2, 4):
        per_rank = [take(PuzzleDataset(sudoku_dir, "test", 8, rank=r, world_size=world, test_mode=True))
                    for r in range(world)]
        assert len({len(b) for b in per_rank}) == 1  # every rank steps the same number of times
        seen = []
        for step in range(len(per_rank[0])):
            effective = {b[step][2] for b in per_rank}
            assert len(effective) == 1
            for r in range(world):
                batch = per_rank[r][step][1]
                assert batch["inputs"].shape == (8 // world, 81)
                real = (batch["inputs"] != 0).all(dim=1)
                pad = ~real
                assert (batch["labels"][pad] == IGNORE_LABEL_ID).all()
                assert (batch["inputs"][pad] == 0).all() and (batch["puzzle_identifiers"][pad] == 0).all()
                seen.extend(batch["inputs"][real].numpy())
        assert sum(b[2] for b in per_rank[0]) == len(expected) == 23
        assert np.array_equal(np.array(seen), expected)  # in order, no gap, no repeat


def test_ranks_split_the_global_batch_without_overlap(multi_dir):
    whole = take(PuzzleDataset(multi_dir, "train", 12, seed=9))
    parts = [take(PuzzleDataset(multi_dir, "train", 12, seed=9, rank=r, world_size=3)) for r in range(3)]
    assert len(whole) > 2 and all(len(p) == len(whole) for p in parts)
    for step, (_, batch, effective) in enumerate(whole):
        assert effective == 12
        joined = torch.cat([p[step][1]["inputs"] for p in parts])
        assert torch.equal(joined, batch["inputs"])
        ids = joined[:, 0].tolist()
        assert len(set(ids)) == 12  # no example twice in one global batch


def test_multi_example_puzzles_sample_like_the_reference(multi_dir):
    starts = np.load(multi_dir / "train" / "all__puzzle_indices.npy")
    groups = np.load(multi_dir / "train" / "all__group_indices.npy")
    raw = np.load(multi_dir / "train" / "all__labels.npy")
    batches = take(PuzzleDataset(multi_dir, "train", 10, seed=2))
    total = 0
    for _, batch, _ in batches:
        ids = batch["inputs"][:, 0].numpy()
        owner = np.searchsorted(starts, ids, side="right") - 1
        # puzzle_identifiers follow the example's puzzle
        assert np.array_equal(batch["puzzle_identifiers"].numpy(), owner + 1)
        # ignore id 0 became -100, nothing else changed
        want = raw[ids].copy()
        want[want == 0] = IGNORE_LABEL_ID
        assert np.array_equal(batch["labels"].numpy(), want)
        total += len(ids)
    # one puzzle per group per epoch: at most one puzzle of each group appears in an epoch
    ids = np.concatenate([b[1]["inputs"][:, 0].numpy() for b in batches])
    puzzles = np.unique(np.searchsorted(starts, ids, side="right") - 1)
    owners = np.searchsorted(groups, puzzles, side="right") - 1
    assert len(owners) == len(set(owners.tolist()))
    assert total == 10 * len(batches)


@pytest.mark.parametrize("fixture, batch, epochs", [("sudoku_dir", 8, 3), ("multi_dir", 6, 2)])
def test_resume_mid_iteration_yields_the_same_batches(request, fixture, batch, epochs):
    path = request.getfixturevalue(fixture)
    kw = dict(global_batch_size=batch, seed=11, epochs_per_iter=epochs, rank=1, world_size=2)
    straight = PuzzleDataset(path, "train", **kw)
    reference = take(straight)
    assert {k: straight.state_dict()[k] for k in ("epoch", "set", "pos", "batch")} == \
        {"epoch": 1, "set": 0, "pos": 0, "batch": 0}
    reference += take(straight) + take(straight)  # three iterations
    assert len(reference) > 6
    for cut in (1, len(reference) // 3, len(reference) // 3 + 1, len(reference) - 1):
        first = PuzzleDataset(path, "train", **kw)
        got = []
        while len(got) < cut:  # the training loop: iterate, possibly over iteration boundaries
            for item in first:
                got.append(item)
                if len(got) == cut:
                    break
        state = json.loads(json.dumps(first.state_dict()))  # survives a checkpoint file
        resumed = PuzzleDataset(path, "train", **kw)
        resumed.load_state_dict(state)
        while len(got) < len(reference):
            more = take(resumed)
            assert more  # a state saved after an iteration's last batch points at the next one
            got.extend(more)
        assert same(got[:len(reference)], reference), f"resume after {cut} batches"


def test_resume_in_test_mode(sudoku_dir):
    kw = dict(global_batch_size=6, test_mode=True)
    reference = take(PuzzleDataset(sudoku_dir, "test", **kw))
    first = PuzzleDataset(sudoku_dir, "test", **kw)
    got = take(first, 2)
    resumed = PuzzleDataset(sudoku_dir, "test", **kw)
    resumed.load_state_dict(first.state_dict())
    assert same(got + take(resumed), reference)
    assert same(take(resumed), reference)  # the next pass starts over
    whole = PuzzleDataset(sudoku_dir, "test", **kw)
    take(whole, len(reference))  # stop right after the last batch, without exhausting
    assert whole.state_dict()["pos"] == 0 and whole.state_dict()["epoch"] == 1


def test_ignore_label_is_left_alone_when_metadata_has_none(multi_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(multi_dir, copy)
    meta = json.loads((copy / "test" / "dataset.json").read_text())
    meta["ignore_label_id"] = None
    (copy / "test" / "dataset.json").write_text(json.dumps(meta))
    _, batch, _ = take(PuzzleDataset(copy, "test", 1000, test_mode=True))[0]
    real = batch["labels"][: len(np.load(copy / "test" / "all__labels.npy"))]
    assert (real == 0).any() and not (real == IGNORE_LABEL_ID).any()


def test_bad_settings_are_user_errors(sudoku_dir, tmp_path):
    with pytest.raises(UserError, match="does not split over 3 ranks"):
        PuzzleDataset(sudoku_dir, "train", 16, world_size=3)
    with pytest.raises(UserError, match="train.data.sudoku"):
        PuzzleDataset(tmp_path / "nothing", "train", 16)
    with pytest.raises(UserError, match="split"):
        PuzzleDataset(sudoku_dir, "val", 16)
    with pytest.raises(UserError, match="larger than"):
        take(PuzzleDataset(sudoku_dir, "train", 64))
    ds = PuzzleDataset(sudoku_dir, "train", 16, seed=1)
    with pytest.raises(UserError, match="seed"):
        ds.load_state_dict(PuzzleDataset(sudoku_dir, "train", 16, seed=2).state_dict())
