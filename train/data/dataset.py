"""Stream batches from a data set in the reference HRM on-disk format, with exact resume.

    ds = PuzzleDataset("data/sudoku", "train", global_batch_size=768, rank=r, world_size=w, seed=0)
    for set_name, batch, global_effective_batch_size in ds:   # one iteration = epochs_per_iter epochs
        ...
    ckpt["data"] = ds.state_dict()            # later: ds.load_state_dict(ckpt["data"])

Train mode samples like the reference: every iteration shuffles the groups (epochs_per_iter times,
concatenated), draws one puzzle per group and takes that puzzle's examples, fills global batches and
drops the incomplete last one; every rank computes the same global batch and keeps its slice.
Test mode walks every example in order and pads the last batch.

All randomness is keyed by (seed, iteration, set[, batch]) instead of a running generator, so the
data position (iteration, set, group position, batch count) is the whole state: resuming from it
yields exactly the batches an uninterrupted run would. Iterate the dataset directly (it already
yields batches); copies in DataLoader worker processes would not advance this object's state.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset

from jobs.errors import UserError

IGNORE_LABEL_ID = -100  # what the loss ignores (PyTorch's cross-entropy default)
STATE_VERSION = 1
_FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")


@dataclass(frozen=True)
class DatasetMetadata:
    """dataset.json of one split."""

    pad_id: int
    ignore_label_id: int | None
    blank_identifier_id: int
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    total_groups: int
    mean_puzzle_examples: float
    sets: list[str]

    @classmethod
    def load(cls, path: Path) -> "DatasetMetadata":
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read data set metadata: {e}", file=str(path),
                            fix="rebuild the data set with `python -m train.data.sudoku --output-dir DIR`") from e
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in raw]
        if not isinstance(raw, dict) or missing:
            raise UserError(f"missing keys {missing}", file=str(path), key=missing[0] if missing else None,
                            fix="rebuild the data set with `python -m train.data.sudoku --output-dir DIR`")
        return cls(**{n: raw[n] for n in names})


def _key(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) for p in parts])


class PuzzleDataset(IterableDataset):
    def __init__(self, data_path: str | Path, split: str, global_batch_size: int, *, rank: int = 0,
                 world_size: int = 1, seed: int = 0, test_mode: bool = False, epochs_per_iter: int = 1) -> None:
        super().__init__()
        if split not in ("train", "test"):
            raise UserError(f"unknown split {split!r}", key="split", fix="use 'train' or 'test'")
        if global_batch_size < 1 or world_size < 1 or global_batch_size % world_size:
            raise UserError(f"global batch size {global_batch_size} does not split over {world_size} ranks",
                            key="global_batch_size", fix="use a positive multiple of the number of ranks")
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is outside 0..{world_size - 1}", key="rank")
        if epochs_per_iter < 1:
            raise UserError(f"epochs_per_iter is {epochs_per_iter}", key="epochs_per_iter", fix="use 1 or more")
        self.data_path = Path(data_path)
        self.split = split
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.test_mode, self.epochs_per_iter = test_mode, epochs_per_iter
        meta_path = self.data_path / split / "dataset.json"
        if not meta_path.is_file():
            raise UserError(f"no data set at {self.data_path} (missing {split}/dataset.json)", key="data_path",
                            fix=f"build one with `python -m train.data.sudoku --output-dir {self.data_path}`")
        self.metadata = DatasetMetadata.load(meta_path)
        self._data: dict[str, dict[str, np.ndarray]] | None = None
        # The data position: iteration (epoch), set index, group (train) or example (test)
        # position, and batches yielded so far in this iteration of this set.
        self._epoch = self._set = self._pos = self._batch = 0

    # --- loading -----------------------------------------------------------------------------

    def _arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """Load lazily: inputs/labels memory-mapped (they can be large), indices in memory."""
        if self._data is None:
            data = {}
            for set_name in self.metadata.sets:
                fields = {}
                for name in _FIELDS:
                    path = self.data_path / self.split / f"{set_name}__{name}.npy"
                    if not path.is_file():
                        raise UserError(f"missing {path.name}", file=str(path.parent), key="data_path",
                                        fix="rebuild the data set with `python -m train.data.sudoku`")
                    fields[name] = np.load(path, mmap_mode="r" if name in ("inputs", "labels") else None)
                data[set_name] = fields
            self._data = data
        return self._data

    # --- batches -----------------------------------------------------------------------------

    def _collate(self, inputs: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> dict[str, torch.Tensor]:
        inputs = inputs.astype(np.int32)
        labels = labels.astype(np.int32)
        ids = ids.astype(np.int32)
        if self.metadata.ignore_label_id is not None:
            labels[labels == self.metadata.ignore_label_id] = IGNORE_LABEL_ID
        pad = self.local_batch_size - len(ids)
        if pad > 0:  # only the last test batch
            inputs = np.pad(inputs, ((0, pad), (0, 0)), constant_values=self.metadata.pad_id)
            labels = np.pad(labels, ((0, pad), (0, 0)), constant_values=IGNORE_LABEL_ID)
            ids = np.pad(ids, (0, pad), constant_values=self.metadata.blank_identifier_id)
        return {"inputs": torch.from_numpy(inputs), "labels": torch.from_numpy(labels),
                "puzzle_identifiers": torch.from_numpy(ids)}

    def _plan(self, d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """For the current iteration and set: the chosen puzzle at each group position, and how many
        examples remain from each position on (to know whether another full batch fits)."""
        groups = d["group_indices"]
        rng = _key(self.seed, self._epoch, self._set)
        order = np.concatenate([rng.permutation(len(groups) - 1) for _ in range(self.epochs_per_iter)])
        puzzles = rng.integers(groups[order], groups[order + 1])
        sizes = np.diff(d["puzzle_indices"])[puzzles]
        remaining = np.concatenate([np.cumsum(sizes[::-1])[::-1], [0]])
        return puzzles, remaining

    def _train_batch(self, d: dict[str, np.ndarray], puzzles: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Example and puzzle indices of the global batch starting at self._pos, and the next position."""
        starts = d["puzzle_indices"]
        size = self.global_batch_size
        pos = self._pos
        if len(starts) - 1 == len(d["inputs"]):  # one example per puzzle (Sudoku): a plain slice
            chosen = puzzles[pos:pos + size]
            return starts[chosen], chosen, pos + len(chosen)
        # Several examples per puzzle: take a random subset of each puzzle's examples, cut to fit.
        rng = _key(self.seed, self._epoch, self._set, self._batch + 1)
        examples, owners, filled = [], [], 0
        while filled < size and pos < len(puzzles):
            p = puzzles[pos]
            n_p = int(starts[p + 1] - starts[p])
            take = min(n_p, size - filled)
            examples.append(starts[p] + rng.choice(n_p, take, replace=False))
            owners.append(np.full(take, p))
            filled += take
            pos += 1
        return np.concatenate(examples), np.concatenate(owners), pos

    def _advance_set(self) -> None:
        self._set, self._pos, self._batch = self._set + 1, 0, 0
        if self._set >= len(self.metadata.sets):
            self._epoch, self._set = self._epoch + 1, 0

    def _iter_train(self) -> Iterator[tuple[str, dict[str, torch.Tensor], int]]:
        data = self._arrays()
        epoch, fresh, yielded = self._epoch, self._set == 0 and self._pos == 0, False
        lo, hi = self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size
        while self._epoch == epoch:
            set_name = self.metadata.sets[self._set]
            d = data[set_name]
            puzzles, remaining = self._plan(d)
            while remaining[self._pos] >= self.global_batch_size:
                examples, owners, self._pos = self._train_batch(d, puzzles)
                self._batch += 1
                last = remaining[self._pos] < self.global_batch_size
                if last:
                    # Move on before the last yield, so a state saved after the last batch of a
                    # set resumes at the next one (the incomplete rest is dropped, as the reference).
                    self._advance_set()
                yielded = True
                ex, ow = examples[lo:hi], owners[lo:hi]
                yield (set_name, self._collate(d["inputs"][ex], d["labels"][ex], d["puzzle_identifiers"][ow]),
                       self.global_batch_size)
                if last:
                    break
            else:
                self._advance_set()
        if fresh and not yielded:
            raise UserError(f"global batch size {self.global_batch_size} is larger than what one iteration "
                            f"of {self.data_path / self.split} holds", key="global_batch_size",
                            fix="lower the batch size, raise epochs_per_iter or build a larger data set")

    def _iter_test(self) -> Iterator[tuple[str, dict[str, torch.Tensor], int]]:
        data = self._arrays()
        epoch = self._epoch
        while self._epoch == epoch:
            set_name = self.metadata.sets[self._set]
            d = data[set_name]
            total = len(d["inputs"])
            while self._pos < total:
                start = self._pos
                end = min(total, start + self.global_batch_size)
                lo = min(end, start + self.rank * self.local_batch_size)
                hi = min(end, start + (self.rank + 1) * self.local_batch_size)
                owners = np.searchsorted(d["puzzle_indices"], np.arange(lo, hi), side="right") - 1
                batch = self._collate(d["inputs"][lo:hi], d["labels"][lo:hi], d["puzzle_identifiers"][owners])
                self._pos, self._batch = end, self._batch + 1
                last = end >= total
                if last:
                    # After a full pass the next iteration walks the test set again from the start.
                    self._advance_set()
                yield set_name, batch, end - start
                if last:
                    break
            else:
                self._advance_set()

    def __iter__(self) -> Iterator[tuple[str, dict[str, torch.Tensor], int]]:
        return self._iter_test() if self.test_mode else self._iter_train()

    # --- resume ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain ints: JSON- and torch.save-friendly. Randomness is a function of these."""
        return {"version": STATE_VERSION, "seed": self.seed, "global_batch_size": self.global_batch_size,
                "epochs_per_iter": self.epochs_per_iter, "test_mode": self.test_mode,
                "total_groups": self.metadata.total_groups,
                "epoch": self._epoch, "set": self._set, "pos": self._pos, "batch": self._batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # A position only means something in the same data stream: same seed, batch size,
        # iteration length and data set (checked by its group count).
        mine = self.state_dict()
        for key in ("seed", "global_batch_size", "epochs_per_iter", "test_mode", "total_groups"):
            if state.get(key) != mine[key]:
                raise UserError(f"checkpoint was written with {key}={state.get(key)!r}, this run has "
                                f"{mine[key]!r}", key=key,
                                fix="resume with the same data settings and data set, or start a fresh run")
        if state.get("version") != STATE_VERSION:
            raise UserError(f"data state version {state.get('version')!r} is not {STATE_VERSION}", key="version",
                            fix="start a fresh run")
        self._epoch, self._set, self._pos, self._batch = (int(state[k]) for k in ("epoch", "set", "pos", "batch"))
