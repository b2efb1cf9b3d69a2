"""Feudal subgoals: H (the manager) sets goals, L (the worker) is rewarded for moving toward them.

Every `manager_period` L updates the manager snapshots z_H; the goal is a learned
projection of that snapshot (goal_dim wide, one goal per token) and is held until the
next snapshot. The worker's intrinsic objective is the cosine between its state change
(z_L after - before, projected to goal_dim) and the goal, the goal detached as in FeUdal
networks: the worker learns to follow, it does not move the goal. The goal learns
through `gating`, where it modulates L's input through a sigmoid gate and so affects
the task loss.

Only the snapshot is carried between updates and the projection is re-applied at the
gradient step, so under the one-step gradient the projection still gets its gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.model.gating import CrossLevelGate
from train.model.layers import CastedLinear


class SubgoalHead(nn.Module):
    def __init__(self, hidden_size: int, goal_dim: int, *, gating: bool, gate_hidden_ratio: float,
                 gate_init_bias: float):
        super().__init__()
        self.goal_proj = CastedLinear(hidden_size, goal_dim, bias=False)
        # In hidden space already when goal_dim == hidden_size: no extra projection to learn.
        self.state_proj = CastedLinear(hidden_size, goal_dim, bias=False) if goal_dim != hidden_size else None
        self.goal_in = None
        self.goal_gate = None
        if gating:
            self.goal_in = CastedLinear(goal_dim, hidden_size, bias=False) if goal_dim != hidden_size else None
            self.goal_gate = CrossLevelGate(hidden_size, gate_hidden_ratio, gate_init_bias)

    def goal(self, snapshot: torch.Tensor) -> torch.Tensor:
        """(B, S, hidden) manager snapshot -> (B, S, goal_dim) goal."""
        return self.goal_proj(snapshot)

    def modulation(self, z_L: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """What the goal adds to L's input injection (only built with `gating`)."""
        if self.goal_gate is None:
            raise RuntimeError("modulation needs subgoal_head.gating")
        goal_h = self.goal_in(goal) if self.goal_in is not None else goal
        return self.goal_gate(z_L, goal_h) * goal_h

    def alignment(self, z_before: torch.Tensor, z_after: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Per-sequence (B,) mean cosine between the worker's state change and the detached goal."""
        change = z_after - z_before
        if self.state_proj is not None:
            change = self.state_proj(change)
        cos = F.cosine_similarity(change.float(), goal.detach().float(), dim=-1, eps=1e-6)
        return cos.mean(dim=-1)
