"""Losses of HRM-ACT: stablemax / softmax cross-entropy and the ACT loss head.

ACTLossHead runs one ACT step and returns the loss of that step plus metrics as *sums*
over the sequences that halted in it (count, accuracy, ...), so the trainer can add
them over steps and ranks and divide by `count` (by the batch size for `*_loss` keys).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jobs.errors import UserError
from train.model.gating import GATE_METRICS
from train.model.hrm import ACTCarry, Batch, HRMACT

IGNORE_LABEL_ID = -100


def _stablemax_s(x: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    # s(x) = x + 1 for x >= 0 and 1 / (1 - x) below: positive, grows linearly instead of
    # exponentially, so large logits do not blow up the loss ("softmax collapse").
    return torch.where(x < 0, 1 / (1 - x + eps), x + 1)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    s = _stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                            ignore_index: int = IGNORE_LABEL_ID) -> torch.Tensor:
    """Per-position loss (same shape as labels), 0 where labels == ignore_index."""
    # float64 where available: s/sum(s) loses precision in float32 for confident logits.
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64
    logprobs = log_stablemax(logits.to(dtype), dim=-1)
    valid = labels != ignore_index
    safe = torch.where(valid, labels, 0).to(torch.long)
    picked = torch.gather(logprobs, dim=-1, index=safe.unsqueeze(-1)).squeeze(-1)
    return -torch.where(valid, picked, 0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                          ignore_index: int = IGNORE_LABEL_ID) -> torch.Tensor:
    """Per-position loss (same shape as labels), 0 where labels == ignore_index."""
    flat = F.cross_entropy(logits.to(torch.float32).reshape(-1, logits.shape[-1]),
                           labels.to(torch.long).reshape(-1), ignore_index=ignore_index, reduction="none")
    return flat.view(labels.shape)


LOSS_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "stablemax_cross_entropy": stablemax_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
}


class ACTLossHead(nn.Module):
    def __init__(self, model: HRMACT, loss_type: str = "stablemax_cross_entropy",
                 feudal_loss_weight: float = 0.0):
        super().__init__()
        if loss_type not in LOSS_FUNCTIONS:
            raise UserError(f"unknown loss {loss_type!r}", key="arch.loss.loss_type",
                            fix=f"use one of {', '.join(LOSS_FUNCTIONS)}")
        if feudal_loss_weight < 0:
            raise UserError(f"must be >= 0, got {feudal_loss_weight}", key="arch.loss.feudal_loss_weight",
                            fix="use 0 to disable the feudal loss")
        self.model = model
        self.loss_type = loss_type
        self.loss_fn = LOSS_FUNCTIONS[loss_type]
        # Feudal is on only where the model built its subgoal head (enabled and weight > 0).
        self.feudal_loss_weight = float(feudal_loss_weight) if model.config.feudal else 0.0

    @property
    def puzzle_emb(self) -> Any:
        return self.model.puzzle_emb

    def initial_carry(self, batch: Batch) -> ACTCarry:
        return self.model.initial_carry(batch)

    def forward(self, carry: ACTCarry, batch: Batch, return_keys: Sequence[str] = ()
                ) -> tuple[ACTCarry, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """One ACT step: (carry, loss, metrics, requested outputs detached, all rows halted)."""
        carry, outputs = self.model(carry, batch)
        labels = carry.current_data["labels"]
        logits = outputs["logits"]

        with torch.no_grad():
            mask = labels != IGNORE_LABEL_ID
            counts = mask.sum(-1)
            divisor = counts.clamp_min(1).unsqueeze(-1)  # padded rows have no labels
            correct = mask & (torch.argmax(logits, dim=-1) == labels)
            seq_correct = correct.sum(-1) == counts
            # Metrics count a puzzle once, on the step it halts.
            valid = carry.halted & (counts > 0)
            metrics = {
                "count": valid.sum(),
                "accuracy": torch.where(valid, (correct.to(torch.float32) / divisor).sum(-1), 0).sum(),
                "exact_accuracy": (valid & seq_correct).sum(),
                "q_halt_accuracy": (valid & ((outputs["q_halt_logits"] >= 0) == seq_correct)).sum(),
                "steps": torch.where(valid, carry.steps, 0).sum(),
            }
            for key in GATE_METRICS:
                if key in outputs:
                    metrics[key] = torch.where(valid, outputs[key], 0).sum()

        # Sums over rows; the trainer scales by 1 / global batch size.
        lm_loss = (self.loss_fn(logits, labels, ignore_index=IGNORE_LABEL_ID) / divisor).sum()
        q_halt_loss = F.binary_cross_entropy_with_logits(
            outputs["q_halt_logits"], seq_correct.to(outputs["q_halt_logits"].dtype), reduction="sum")
        metrics["lm_loss"] = lm_loss.detach()
        metrics["q_halt_loss"] = q_halt_loss.detach()
        q_loss = q_halt_loss
        if "target_q_continue" in outputs:
            q_continue_loss = F.binary_cross_entropy_with_logits(
                outputs["q_continue_logits"], outputs["target_q_continue"], reduction="sum")
            metrics["q_continue_loss"] = q_continue_loss.detach()
            q_loss = q_loss + q_continue_loss
        loss = lm_loss + 0.5 * q_loss

        if "feudal_cos" in outputs:
            feudal_loss = (1 - outputs["feudal_cos"]).sum()
            metrics["feudal_loss"] = feudal_loss.detach()
            if self.feudal_loss_weight > 0:
                loss = loss + self.feudal_loss_weight * feudal_loss

        detached = {k: outputs[k].detach() for k in return_keys if k in outputs}
        return carry, loss, metrics, detached, carry.halted.all()
