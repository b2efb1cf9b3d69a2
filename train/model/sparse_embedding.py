"""Per-puzzle embeddings trained sparsely with sign-SGD.

The full table (one row per puzzle identifier) is a buffer that no dense optimizer sees.
In training each forward copies the batch's rows into `local_weights`, a (batch, dim)
leaf that collects the gradient; `CastedSparseEmbeddingSignSGD.step` then sums the
gradient per id and updates only those rows. With gradients this sparse Adam is close
to sign-SGD anyway, and the table never needs optimizer state.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.optim import Optimizer

from train.model.layers import trunc_normal_init_


class CastedSparseEmbedding(nn.Module):
    def __init__(self, num_embeddings: int, dim: int, batch_size: int, init_std: float, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.weights = nn.Buffer(trunc_normal_init_(torch.empty(num_embeddings, dim), std=init_std),
                                 persistent=True)
        # Rebuilt from `weights` every training step, so not saved in checkpoints.
        self.local_weights = nn.Buffer(torch.zeros(batch_size, dim, requires_grad=True), persistent=False)
        self.local_ids = nn.Buffer(torch.zeros(batch_size, dtype=torch.int32), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.weights[ids].to(self.cast_to)
        with torch.no_grad():
            self.local_weights.copy_(self.weights[ids])
            self.local_ids.copy_(ids)
        return self.local_weights.to(self.cast_to)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "CastedSparseEmbedding":
        super()._apply(fn, recurse)
        # Moving a requires-grad buffer to another device yields a non-leaf copy whose
        # .grad never fills: make it a fresh leaf again.
        if not self.local_weights.is_leaf or not self.local_weights.requires_grad:
            self.local_weights = self.local_weights.detach().requires_grad_(True)
        return self


class CastedSparseEmbeddingSignSGD(Optimizer):
    """Sign-SGD with decoupled weight decay on the rows a batch used.

    `params` is the embedding module itself or its `.buffers()`; lr may change between
    steps through `param_groups` like any optimizer (schedulers work).
    """

    def __init__(self, params: CastedSparseEmbedding | Iterable[torch.Tensor], lr: float = 1e-3,
                 weight_decay: float = 1e-2, world_size: int = 1):
        if isinstance(params, CastedSparseEmbedding):
            params = [params.local_weights, params.local_ids, params.weights]
        if lr < 0:
            raise ValueError(f"invalid learning rate: {lr}")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay: {weight_decay}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, world_size=world_size))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            local_grad = ids = table = None
            for p in group["params"]:
                if p.requires_grad:
                    local_grad = p.grad
                elif not p.is_floating_point():
                    ids = p
                else:
                    table = p
            if ids is None or table is None:
                raise ValueError("pass a CastedSparseEmbedding (or its buffers) to this optimizer")
            if local_grad is None:  # no backward since the last zero_grad: nothing to do
                continue
            _signsgd_rows(local_grad, ids, table, lr=group["lr"], weight_decay=group["weight_decay"],
                          world_size=group["world_size"])


# all_gather_into_tensor was renamed all_gather_single (torch 2.13 warns on the old name in every rank's log).
_all_gather_into = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def _signsgd_rows(local_grad: torch.Tensor, local_ids: torch.Tensor, table: torch.Tensor, *,
                  lr: float, weight_decay: float, world_size: int) -> None:
    grads, ids = local_grad, local_ids
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        # Every rank applies the same update from everyone's rows, so tables stay identical.
        grads = torch.empty((world_size * local_grad.shape[0], local_grad.shape[1]),
                            dtype=local_grad.dtype, device=local_grad.device)
        ids = torch.empty(world_size * local_ids.shape[0], dtype=local_ids.dtype, device=local_ids.device)
        _all_gather_into(grads, local_grad)
        _all_gather_into(ids, local_ids)

    # The same puzzle may appear several times in a batch: sum its gradients first. Not with
    # unique(), whose output size depends on the data (a host sync on CUDA): sort the ids, number
    # the runs of equal ids, and add every row into its run's slot (at most len(ids) slots).
    sorted_ids, order = ids.sort()
    new_run = torch.ones_like(sorted_ids, dtype=torch.bool)
    new_run[1:] = sorted_ids[1:] != sorted_ids[:-1]
    inverse = torch.empty_like(order)
    inverse[order] = new_run.cumsum(0) - 1
    summed = torch.zeros_like(grads).index_add_(0, inverse, grads)[inverse]  # each row: its id's sum

    # Rows of one id compute the same new value from the same old row, so their writes agree.
    rows = table[ids]
    rows.mul_(1.0 - lr * weight_decay).add_(torch.sign(summed), alpha=-lr)
    table[ids] = rows
