"""Collect a batch of whole episodes with the LSTM policy, then PPO with GAE on them.

Episodes of one batch run side by side from t=0 until every one has ended, so training can
replay each episode through the LSTM from a zero state (no stored hidden states) and the batch
is also what the ConSpec memory needs: whole episodes with their outcome.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from examples.keydoor import env
from examples.keydoor.agent import Policy, mixed_log_probs

GAE_LAMBDA = 0.95
EPOCHS = 4
MINIBATCH_EPISODES = 32
CLIP = 0.2
VALUE_COEF = 0.5
ENTROPY_COEF = 0.01
MAX_GRAD_NORM = 0.5


@dataclass
class Rollout:
    obs: torch.Tensor        # (T + 1, n, D) uint8: obs[t] is seen before action t, obs[T] after the last
    actions: torch.Tensor    # (T, n) int64
    log_probs: torch.Tensor  # (T, n) of the mixed (epsilon) policy that sampled them
    values: torch.Tensor     # (T, n)
    rewards: torch.Tensor    # (T, n) from the environment
    mask: torch.Tensor       # (T, n) bool: the episode was still running at step t
    episode_reward: np.ndarray   # (n,)
    success: np.ndarray      # (n,) bool
    doors_opened: np.ndarray  # (n,)
    lengths: np.ndarray      # (n,)


@torch.no_grad()
def collect(policy: Policy, task: str, n: int, max_steps: int, epsilon: float,
            rng: np.random.Generator, gen: torch.Generator) -> Rollout:
    batch = env.reset(task, n, rng, max_steps)
    obs, actions, log_probs, values, rewards, mask = [torch.from_numpy(env.observe(batch))], [], [], [], [], []
    state = None
    while not batch.done.all():
        mask.append(torch.from_numpy(~batch.done))
        logits, value, state = policy(obs[-1][None].float(), state)
        logp = mixed_log_probs(logits[0], epsilon)
        action = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(1)
        rewards.append(torch.from_numpy(env.step(batch, action.numpy())))
        obs.append(torch.from_numpy(env.observe(batch)))
        actions.append(action)
        log_probs.append(logp.gather(1, action[:, None]).squeeze(1))
        values.append(value[0])
    reward = torch.stack(rewards).sum(0).numpy()
    return Rollout(obs=torch.stack(obs), actions=torch.stack(actions), log_probs=torch.stack(log_probs),
                   values=torch.stack(values), rewards=torch.stack(rewards), mask=torch.stack(mask),
                   episode_reward=reward, success=reward > 0, doors_opened=batch.doors_opened.copy(),
                   lengths=batch.t.copy())


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float = GAE_LAMBDA) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets; an episode's end (goal or time limit) bootstraps from 0."""
    steps = len(rewards)
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[1])
    for t in reversed(range(steps)):
        if t + 1 < steps:
            going = mask[t + 1].float()
            next_value = values[t + 1] * going
        else:                                  # every episode has ended by the last step
            going = next_value = torch.zeros(rewards.shape[1])
        delta = rewards[t] + gamma * next_value - values[t]
        last = (delta + gamma * lam * going * last) * mask[t]
        adv[t] = last
    return adv, adv + values


def update(policy: Policy, optimizer: torch.optim.Optimizer, roll: Rollout, rewards: torch.Tensor,
           gamma: float, epsilon: float, gen: torch.Generator) -> dict[str, float]:
    """PPO epochs over minibatches of whole episodes; returns the last minibatch's losses."""
    adv, target = gae(rewards, roll.values, roll.mask, gamma)
    n = roll.actions.shape[1]
    stats: dict[str, float] = {}
    for _ in range(EPOCHS):
        for mb in torch.randperm(n, generator=gen).split(MINIBATCH_EPISODES):
            m = roll.mask[:, mb]
            logits, value, _ = policy(roll.obs[:-1, mb].float())
            logp_all = mixed_log_probs(logits, epsilon)
            logp = logp_all.gather(-1, roll.actions[:, mb, None]).squeeze(-1)
            a = adv[:, mb][m]
            a = (a - a.mean()) / (a.std(unbiased=False) + 1e-8)
            ratio = (logp[m] - roll.log_probs[:, mb][m]).exp()
            policy_loss = -torch.min(ratio * a, ratio.clamp(1 - CLIP, 1 + CLIP) * a).mean()
            value_loss = ((value[m] - target[:, mb][m]) ** 2).mean()
            log_pi = torch.log_softmax(logits, -1)
            entropy = -(log_pi.exp() * log_pi).sum(-1)[m].mean()
            loss = policy_loss + VALUE_COEF * value_loss - ENTROPY_COEF * entropy
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            stats = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item()}
    return stats
