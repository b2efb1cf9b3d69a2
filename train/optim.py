"""The trainer's optimizer (AdamATan2) and learning-rate schedule (linear warmup, then cosine)."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from adam_atan2_pytorch import AdamAtan2

# AdamATan2 replaces Adam's `m / (sqrt(v) + eps)` with `atan2(m, sqrt(v))`: bounded updates and no eps
# to tune; the HRM reference trains with it. adam-atan2-pytorch is the maintained pure-PyTorch version.
AdamATan2 = AdamAtan2

# adam-atan2-pytorch refuses lr=0 at construction; the schedule overwrites the lr before every step.
_PLACEHOLDER_LR = 1e-8


def make_adam_atan2(params: Iterable[torch.nn.Parameter], *, weight_decay: float,
                    betas: tuple[float, float]) -> torch.optim.Optimizer:
    """AdamATan2 with decoupled weight decay (p *= 1 - lr * wd), lr set later by `set_lr`."""
    return AdamATan2(params, lr=_PLACEHOLDER_LR, weight_decay=weight_decay, betas=betas)


def cosine_lr(step: int, *, base_lr: float, warmup_steps: int, total_steps: int,
              min_ratio: float = 0.0) -> float:
    """lr for optimizer step `step` (1-based): linear warmup from 0, then a half cosine from base_lr
    down to base_lr * min_ratio at `total_steps` (flat afterwards). min_ratio=1 gives a constant lr
    after warmup, which is what the HRM reference runs with."""
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
