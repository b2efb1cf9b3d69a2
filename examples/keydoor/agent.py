"""The LSTM actor-critic: an MLP encoder of the grid, an LSTM over the episode, two heads."""
from __future__ import annotations

import torch
from torch import nn


class Policy(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden_dim: int, lstm_hidden_size: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(obs_dim, hidden_dim), nn.ReLU(),
                                     nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        self.lstm = nn.LSTM(hidden_dim, lstm_hidden_size)
        self.pi = nn.Linear(lstm_hidden_size, n_actions)
        self.v = nn.Linear(lstm_hidden_size, 1)
        # Small initial logits: the first policy is close to uniform whatever the width.
        nn.init.orthogonal_(self.pi.weight, gain=0.01)
        nn.init.zeros_(self.pi.bias)

    def forward(self, obs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """obs (T, B, obs_dim) -> logits (T, B, A), values (T, B), LSTM state.

        Every episode starts from a zero state, so training replays whole episodes from t=0
        and gets the same hidden states the rollout had.
        """
        out, state = self.lstm(self.encoder(obs), state)
        return self.pi(out), self.v(out).squeeze(-1), state


def mixed_log_probs(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    """log of (1 - eps) * pi + eps * uniform: epsilon-greedy exploration as part of the policy,
    so that the policy gradient stays on-policy for what was actually sampled."""
    probs = torch.softmax(logits, dim=-1)
    return torch.log((1.0 - epsilon) * probs + epsilon / logits.shape[-1])
