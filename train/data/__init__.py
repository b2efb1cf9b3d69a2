"""Training data: the Sudoku generator (`python -m train.data.sudoku`), its solver and
augmentations, and the batch loader (`train.data.dataset.PuzzleDataset`) for the reference HRM
on-disk format. Import the submodules directly; the generator does not need torch."""
