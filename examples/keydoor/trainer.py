"""The agent's whole state and one training iteration; checkpoints that resume bit for bit.

One iteration: `batch_size` episodes side by side (fewer for the last one), the ConSpec
intrinsic reward on them, PPO epochs, the episodes into the success/failure memory, one
contrastive step for the prototypes. Everything random draws from two generators that the
checkpoint keeps (numpy for layouts, torch for actions and sampling), so a resumed run makes
the same draws as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import math
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from examples.keydoor import env, ppo
from examples.keydoor.agent import Policy
from examples.keydoor.config import Config
from examples.keydoor.conspec import MIN_EPISODES, SAMPLE_EPISODES, EpisodeMemory, Prototypes
from examples.keydoor.conspec import STEPS as PROTOTYPE_STEPS
from jobs.errors import UserError
from train import checkpoint

FORMAT = 1
CHECKPOINT = "keydoor.pt"
EPSILON_START = 0.5
EPSILON_MIN = 0.01
WINDOW = 100            # mean_reward and success_rate are over the last WINDOW episodes
# Keys that may change between a checkpoint and its resume (the budget; logging).
RESUMABLE_CHANGES = ("episodes", "wandb")


class Trainer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        dim = env.obs_dim(cfg.environment)
        self.policy = Policy(dim, env.N_ACTIONS, cfg.hidden_dim, cfg.lstm_hidden_size)
        self.prototypes = Prototypes(dim, cfg.hidden_dim, cfg.num_prototypes)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.learning_rate)
        self.proto_optimizer = torch.optim.Adam(self.prototypes.parameters(), lr=cfg.learning_rate)
        self.memory = {True: EpisodeMemory(cfg.memory_size, dim), False: EpisodeMemory(cfg.memory_size, dim)}
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.episode = 0
        self.updates = 0
        self.successes = 0
        self.max_reward = 0.0
        self.recent_reward: deque[float] = deque(maxlen=WINDOW)
        self.recent_success: deque[bool] = deque(maxlen=WINDOW)
        self.recent_doors: deque[int] = deque(maxlen=WINDOW)

    @property
    def finished(self) -> bool:
        return self.episode >= self.cfg.episodes

    @property
    def epsilon(self) -> float:
        return max(EPSILON_MIN, EPSILON_START * self.cfg.epsilon_decay ** self.episode)

    # --- one iteration -----------------------------------------------------------------------

    def iteration(self) -> dict[str, float]:
        cfg = self.cfg
        n = min(cfg.batch_size, cfg.episodes - self.episode)
        eps = self.epsilon
        roll = ppo.collect(self.policy, cfg.environment, n, cfg.max_steps_per_episode, eps, self.rng, self.gen)
        # The intrinsic reward of step t is for the state it led to, obs[t + 1].
        intrinsic = self.prototypes.intrinsic(roll.obs[1:].float(), roll.mask) * cfg.intrinsic_reward_scale
        stats = ppo.update(self.policy, self.optimizer, roll, roll.rewards + intrinsic, cfg.gamma, eps, self.gen)
        stats.update(self._train_prototypes(roll))
        self.episode += n
        self.updates += 1
        self.successes += int(roll.success.sum())
        self.max_reward = max(self.max_reward, float(roll.episode_reward.max()))
        self.recent_reward.extend(roll.episode_reward.tolist())
        self.recent_success.extend(roll.success.tolist())
        self.recent_doors.extend(roll.doors_opened.tolist())
        stats.update(intrinsic_reward=float(intrinsic.sum(0).mean()), epsilon=eps)
        return stats

    def _train_prototypes(self, roll: ppo.Rollout) -> dict[str, float]:
        # Every success is kept (rare and what ConSpec learns from); failures in the same number,
        # at least a few, so that the memory stays balanced.
        wins, losses = np.flatnonzero(roll.success), np.flatnonzero(~roll.success)
        keep = max(len(wins), MIN_EPISODES)
        losses = losses[torch.randperm(len(losses), generator=self.gen)[:keep].numpy()]
        for j in (*wins, *losses):
            self.memory[bool(roll.success[j])].add(roll.obs[:roll.lengths[j], j].numpy())
        if min(len(self.memory[True]), len(self.memory[False])) < MIN_EPISODES:
            return {"prototypes_valid": 0}
        for _ in range(PROTOTYPE_STEPS):
            loss, stats = self.prototypes.loss(self.memory[True].sample(SAMPLE_EPISODES, self.gen),
                                               self.memory[False].sample(SAMPLE_EPISODES, self.gen))
            self.proto_optimizer.zero_grad()
            loss.backward()
            self.proto_optimizer.step()
        return stats

    # --- what the sweep reads ----------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        mean = (lambda xs: float(np.mean(xs)) if xs else math.nan)
        return {"mean_reward": mean(self.recent_reward), "success_rate": mean(self.recent_success),
                "max_reward": self.max_reward, "doors_opened": mean(self.recent_doors),
                "episodes": self.episode, "updates": self.updates,
                "total_success_rate": self.successes / self.episode if self.episode else math.nan,
                "prototypes_valid": int(self.prototypes.valid.sum())}

    @torch.no_grad()
    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        """The policy without exploration on fresh layouts, from generators of its own."""
        roll = ppo.collect(self.policy, self.cfg.environment, episodes, self.cfg.max_steps_per_episode, 0.0,
                           np.random.default_rng(seed), torch.Generator().manual_seed(seed))
        return {"eval_success_rate": float(roll.success.mean()), "eval_mean_reward": float(roll.episode_reward.mean())}

    # --- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "config": dataclasses.asdict(self.cfg),
                "policy": self.policy.state_dict(), "prototypes": self.prototypes.state_dict(),
                "optimizer": self.optimizer.state_dict(), "proto_optimizer": self.proto_optimizer.state_dict(),
                "memory": {"success": self.memory[True].state_dict(), "failure": self.memory[False].state_dict()},
                "rng": self.rng.bit_generator.state, "gen": self.gen.get_state(),
                "episode": self.episode, "updates": self.updates, "successes": self.successes,
                "max_reward": self.max_reward, "recent_reward": list(self.recent_reward),
                "recent_success": list(self.recent_success), "recent_doors": list(self.recent_doors)}

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        if state.get("format") != FORMAT:
            raise UserError(f"{source} is not a keydoor checkpoint of format {FORMAT}",
                            fix="delete it or point SWEEP_CHECKPOINT_DIR elsewhere")
        mine = dataclasses.asdict(self.cfg)
        differ = sorted(k for k, v in state["config"].items() if k not in RESUMABLE_CHANGES and mine.get(k) != v)
        if differ:
            raise UserError(f"{source} was written with other settings ({', '.join(differ)})",
                            key=differ[0],
                            fix="resume with the same settings, or start in an empty checkpoint directory")
        self.policy.load_state_dict(state["policy"])
        self.prototypes.load_state_dict(state["prototypes"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.proto_optimizer.load_state_dict(state["proto_optimizer"])
        self.memory[True].load_state_dict(state["memory"]["success"])
        self.memory[False].load_state_dict(state["memory"]["failure"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        self.episode, self.updates, self.successes = state["episode"], state["updates"], state["successes"]
        self.max_reward = state["max_reward"]
        self.recent_reward.extend(state["recent_reward"])
        self.recent_success.extend(state["recent_success"])
        self.recent_doors.extend(state["recent_doors"])

    def save(self, directory: Path) -> Path:
        path = directory / CHECKPOINT
        checkpoint.save_atomic(path, self.state_dict())     # a kill mid-write leaves the last checkpoint whole
        return path

    def load(self, path: Path) -> None:
        self.load_state_dict(checkpoint.read(path, fix="delete it to start afresh"), source=str(path))
