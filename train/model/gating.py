"""Learned sigmoid gates on the cross-level injections (H->L and L->H).

Without gates L adds all of z_H to its input and H all of z_L. A gate is a small MLP
over (receiver state, sender state) giving one value per channel in (0, 1) that scales
what the sender injects. Its output bias starts at `gate_init_bias` (-2.2: sigmoid = 0.10)
and its output weights near zero, so the levels start mostly decoupled and open the
channels they find useful.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from train.model.layers import CastedLinear

# A gate below/above these counts as saturated (closed/open) in the metrics.
SATURATION_LOW, SATURATION_HIGH = 0.1, 0.9
GATE_METRICS = ("gate_mean", "gate_saturation", "h_contribution", "l_contribution")


class CrossLevelGate(nn.Module):
    def __init__(self, hidden_size: int, hidden_ratio: float, init_bias: float):
        super().__init__()
        inner = max(1, round(hidden_ratio * hidden_size))
        self.inp = CastedLinear(2 * hidden_size, inner, bias=True)
        # Small output weights: gates start at ~sigmoid(init_bias) with a little spread,
        # yet every weight already gets a gradient (an exact zero init would freeze `inp`).
        self.out = CastedLinear(inner, hidden_size, bias=True, init_std=0.1 / math.sqrt(inner))
        with torch.no_grad():
            self.out.bias.fill_(init_bias)  # type: ignore[union-attr]

    def forward(self, receiver: torch.Tensor, sender: torch.Tensor) -> torch.Tensor:
        hidden = F.silu(self.inp(torch.cat((receiver, sender), dim=-1)))
        return torch.sigmoid(self.out(hidden))


@torch.no_grad()
def gate_metrics(gate_hl: torch.Tensor, h_part: torch.Tensor, l_input: torch.Tensor,
                 gate_lh: torch.Tensor, l_part: torch.Tensor, h_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sequence (B,) diagnostics of one gated H->L and L->H update.

    gate_mean / gate_saturation average over both gates' channels and tokens;
    h_contribution is |gated z_H| / |L's whole input| per token, averaged (how much
    the manager steers the worker); l_contribution the same for z_L in H's input.
    """
    gates = torch.cat((gate_hl, gate_lh), dim=-1).float()
    saturated = (gates < SATURATION_LOW) | (gates > SATURATION_HIGH)
    return {
        "gate_mean": gates.mean(dim=(-2, -1)),
        "gate_saturation": saturated.float().mean(dim=(-2, -1)),
        "h_contribution": _norm_ratio(h_part, l_input),
        "l_contribution": _norm_ratio(l_part, h_input),
    }


def _norm_ratio(part: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    ratio = part.float().norm(dim=-1) / whole.float().norm(dim=-1).clamp_min(1e-6)
    return ratio.mean(dim=-1)
