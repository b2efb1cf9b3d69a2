"""The agent learns the single task: well above a random policy measured on the same layouts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from examples.keydoor import env
from examples.keydoor.cli import BASELINE_SEED
from examples.keydoor.config import parse_args
from examples.keydoor.trainer import Trainer


@pytest.mark.slow
@pytest.mark.timeout(300)   # about 15 s on an idle core
def test_single_task_is_learned_well_above_random():
    torch.set_num_threads(1)
    trainer = Trainer(parse_args(["environment=single", "episodes=1536", "seed=0"]))
    while not trainer.finished:
        trainer.iteration()
    _, wins = env.random_policy("single", 1000, np.random.default_rng(BASELINE_SEED), 100)
    random_rate = wins.mean()
    learned = trainer.evaluate(200, BASELINE_SEED)["eval_success_rate"]
    print(f"\nsingle, 1536 episodes: eval success {learned:.2f}, training {trainer.metrics()['success_rate']:.2f}, "
          f"random {random_rate:.3f}")
    assert 0.1 < random_rate < 0.25
    assert learned > random_rate + 0.3 and trainer.metrics()["success_rate"] > 2 * random_rate
