"""ConSpec-style credit assignment: prototypes of what successful episodes have in common.

A memory keeps whole episodes, split by outcome (reached the goal or not). A small encoder and
`num_prototypes` prototype vectors are trained contrastively on it: for every prototype, the
best cosine match over a successful episode should be 1 and over a failed one 0, and the
prototypes should differ from one another. A prototype that passes that test on the memory
("valid") pays an intrinsic reward the first time in an episode the agent reaches a state that
matches it: the increase of the episode's running best match, so each valid prototype pays at
most once per episode and revisiting pays nothing. The sum over valid prototypes, times
`intrinsic_reward_scale`, joins the environment's reward.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EMBED_DIM = 32
MATCH = 0.6          # cosine similarity from which a state counts as matching a prototype
VALID_MARGIN = 0.5   # a valid prototype's mean best match over successful episodes is above MATCH
                     # and beats its mean best match over failed ones by this much
SAMPLE_EPISODES = 16  # episodes of each kind per contrastive step
MIN_EPISODES = 2     # of each kind before the prototypes train at all
STEPS = 8            # contrastive steps per training iteration


class EpisodeMemory:
    """Whole episodes' observations in a ring of `capacity` states (memory_size); the oldest
    episodes make room for new ones."""

    def __init__(self, capacity: int, obs_dim: int) -> None:
        self.states = np.zeros((capacity, obs_dim), dtype=np.uint8)
        self.episodes: list[tuple[int, int]] = []    # (start, length), oldest first
        self.head = 0

    def __len__(self) -> int:
        return len(self.episodes)

    def add(self, obs: np.ndarray) -> None:
        capacity = len(self.states)
        obs = obs[-capacity:]                        # longer than the whole memory: keep its end
        if self.head + len(obs) > capacity:
            self.head = 0                             # episodes stay contiguous
        start, end = self.head, self.head + len(obs)
        self.episodes = [(s, n) for s, n in self.episodes if s + n <= start or s >= end]
        self.states[start:end] = obs
        self.episodes.append((start, len(obs)))
        self.head = end

    def sample(self, k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to `k` episodes: obs (T, k, D) float32, zero-padded, and mask (T, k)."""
        picks = torch.randperm(len(self.episodes), generator=gen)[:k].tolist()
        chosen = [self.episodes[i] for i in picks]
        horizon = max(n for _, n in chosen)
        obs = torch.zeros(horizon, len(chosen), self.states.shape[1])
        mask = torch.zeros(horizon, len(chosen), dtype=torch.bool)
        for j, (s, n) in enumerate(chosen):
            obs[:n, j] = torch.from_numpy(self.states[s:s + n]).float()
            mask[:n, j] = True
        return obs, mask

    def state_dict(self) -> dict:
        return {"states": self.states.copy(), "episodes": list(self.episodes), "head": self.head}

    def load_state_dict(self, state: dict) -> None:
        self.states = state["states"].copy()
        self.episodes = [tuple(e) for e in state["episodes"]]
        self.head = int(state["head"])


class Prototypes(nn.Module):
    def __init__(self, obs_dim: int, hidden_dim: int, num_prototypes: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(obs_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, EMBED_DIM))
        self.prototypes = nn.Parameter(torch.randn(num_prototypes, EMBED_DIM))
        self.register_buffer("valid", torch.zeros(num_prototypes, dtype=torch.bool))

    def similarity(self, obs: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of every state to every prototype: (..., D) -> (..., K)."""
        return F.normalize(self.encoder(obs), dim=-1) @ F.normalize(self.prototypes, dim=-1).T

    def _best(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Best match over each episode's real steps: (T, B, D) -> (B, K).
        sim = self.similarity(obs).masked_fill(~mask[..., None], -1.0)
        return sim.max(dim=0).values

    def loss(self, success: tuple[torch.Tensor, torch.Tensor],
             failure: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Contrastive loss on episodes from memory; also marks which prototypes are valid."""
        hit, miss = self._best(*success), self._best(*failure)
        contrast = ((1.0 - hit) ** 2).mean(0) + (miss.clamp(min=0.0) ** 2).mean(0)
        unit = F.normalize(self.prototypes, dim=-1)
        overlap = unit @ unit.T - torch.eye(len(unit))
        loss = contrast.sum() + (overlap.clamp(min=0.0) ** 2).sum() / max(1, len(unit) - 1)
        with torch.no_grad():
            hit_mean, miss_mean = hit.mean(0), miss.mean(0)
            self.valid.copy_((hit_mean > MATCH) & (hit_mean - miss_mean > VALID_MARGIN))
        return loss, {"conspec_loss": loss.item(), "prototypes_valid": int(self.valid.sum()),
                      "match_success": hit.mean().item(), "match_failure": miss.mean().item(),
                      }

    @torch.no_grad()
    def intrinsic(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(T, B, D) episodes from t=0 -> (T, B) intrinsic reward before scaling."""
        if not self.valid.any():
            return torch.zeros(mask.shape)
        score = ((self.similarity(obs) - MATCH) / (1.0 - MATCH)).clamp(0.0, 1.0)
        score = score * mask[..., None] * self.valid
        best = score.cummax(dim=0).values
        gain = best - torch.cat([torch.zeros_like(best[:1]), best[:-1]])
        return gain.sum(-1)
