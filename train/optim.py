"""The trainer's dense optimizer and learning-rate schedule (linear warmup, then cosine).

`AdamATan2` is the update rule the HRM reference trains with (the `adam-atan2` package, 0.0.3,
a CUDA kernel): Adam with `m / (sqrt(v) + eps)` replaced by `atan2`, bounded and without eps,

    p <- p * (1 - lr * wd)                          decoupled weight decay, with this step's lr
    m <- lerp(m, g, 1 - beta1);  v <- lerp(v, g*g, 1 - beta2)
    p <- p - (lr / bc1) * atan2(m, sqrt(v) / sqrt(bc2))     bc_i = 1 - beta_i ** step

Written here from that rule, because the package builds only with a CUDA toolchain. As in its
kernel the state has the parameter's dtype and the arithmetic runs in float32 for bfloat16/float16
parameters (float64 for float64); each parameter counts its own steps.

`adam_atan2_pytorch` (the adam-atan2-pytorch package) is a different rule: it scales the update by
a = 1.27 and divides m by bc1 inside the atan2, so after warm-up it steps about 1.27x further than
the reference with the same lr. It stays available by name (`optimizer=adam_atan2_pytorch`).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from jobs.errors import UserError

# What each dtype computes in: the kernel's opmath type (half precisions widen to float32).
_OPMATH = {torch.bfloat16: torch.float32, torch.float16: torch.float32}


class AdamATan2(torch.optim.Optimizer):
    """The HRM reference's AdamATan2 (see the module docstring), with torch._foreach_* ops.

    lr=0 is allowed: the trainer's schedule sets the lr before every step.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 1e-2):
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas: {betas}")
        if not weight_decay >= 0.0:
            raise ValueError(f"invalid weight_decay: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # Tensors that share device, dtype and step count take one pass of foreach ops (one
            # kernel launch per op on CUDA). On the CPU foreach ops loop over the tensors anyway, and
            # one tensor at a time keeps the temporaries small and warm in cache (hrm_v1's weights on one
            # thread: about 125 ms a step instead of 170).
            batches: dict[tuple[Any, ...], list[Tensor]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamATan2 does not take sparse gradients")
                state = self.state[p]
                if not state:
                    # A Python int, not a tensor: the bias corrections are then host arithmetic and
                    # the step never waits for the GPU.
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                key = (p.device, p.dtype, state["step"]) + ((len(batches),) if p.device.type == "cpu" else ())
                batches[key].append(p)
            for (_, _, step, *_), params in batches.items():
                self._update(params, group, step)
        return loss

    def _update(self, params: list[Tensor], group: dict[str, Any], step: int) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        # Host doubles, rounded once to the math dtype by the foreach ops (as the kernel casts them).
        step_size = lr / (1.0 - beta1 ** step)
        bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
        states = [self.state[p] for p in params]
        opmath = _OPMATH.get(params[0].dtype)
        p_math, grads = _widen(params, opmath), _widen([p.grad for p in params], opmath)  # type: ignore[misc]
        exp_avgs = _widen([s["exp_avg"] for s in states], opmath)
        exp_avg_sqs = _widen([s["exp_avg_sq"] for s in states], opmath)

        if wd != 0.0:  # multiplying by exactly 1.0 changes nothing: skip the pass
            torch._foreach_mul_(p_math, 1.0 - lr * wd)
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        # v + (1 - b2) (g^2 - v) as b2 v + (1 - b2) g^2: equal to float precision, without a g^2 temporary.
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, bc2_sqrt)
        # PyTorch has no foreach atan2: one kernel per tensor, written in place. atan2, not atan(m/d):
        # a parameter whose gradients were all zero has m = d = 0 and must get 0, not NaN.
        updates = [torch.atan2(m, d, out=d) for m, d in zip(exp_avgs, denoms)]
        torch._foreach_add_(p_math, updates, alpha=-step_size)

        if opmath:  # round back into the parameter's dtype, as the kernel stores its registers
            torch._foreach_copy_(params, p_math)
            torch._foreach_copy_([s["exp_avg"] for s in states], exp_avgs)
            torch._foreach_copy_([s["exp_avg_sq"] for s in states], exp_avg_sqs)


def _widen(tensors: list[Tensor], dtype: torch.dtype | None) -> list[Tensor]:
    """Copies in `dtype` to compute in, or the tensors themselves (updated in place) when None."""
    return tensors if dtype is None else [t.to(dtype) for t in tensors]


# adam-atan2-pytorch refuses lr=0 at construction; the schedule overwrites the lr before every step.
_PLACEHOLDER_LR = 1e-8


def _adam_atan2_pytorch(params: Iterable[Tensor], weight_decay: float,
                        betas: tuple[float, float]) -> torch.optim.Optimizer:
    from adam_atan2_pytorch import AdamAtan2  # only when chosen: the default needs no import

    return AdamAtan2(params, lr=_PLACEHOLDER_LR, weight_decay=weight_decay, betas=betas)


def _adam_atan2(params: Iterable[Tensor], weight_decay: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    return AdamATan2(params, lr=0.0, weight_decay=weight_decay, betas=betas)


# The config's `optimizer` key: the name of the dense optimizer.
DENSE_OPTIMIZERS: dict[str, Callable[[Iterable[Tensor], float, tuple[float, float]], torch.optim.Optimizer]] = {
    "adam_atan2": _adam_atan2,                    # the HRM reference's rule (default)
    "adam_atan2_pytorch": _adam_atan2_pytorch,    # adam-atan2-pytorch's defaults: a = 1.27, bc1 inside atan2
}


def check_optimizer(name: str) -> None:
    """The config's `optimizer` must name one of DENSE_OPTIMIZERS (the trainer checks it before setup)."""
    if name not in DENSE_OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}", key="optimizer",
                        fix=f"use one of {', '.join(DENSE_OPTIMIZERS)} (adam_atan2 is the HRM reference's rule)")


def make_dense_optimizer(name: str, params: Iterable[Tensor], *, weight_decay: float,
                         betas: tuple[float, float]) -> torch.optim.Optimizer:
    """The dense optimizer called `name`, with decoupled weight decay; its lr is set later by `set_lr`."""
    check_optimizer(name)
    return DENSE_OPTIMIZERS[name](params, weight_decay, betas)


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
