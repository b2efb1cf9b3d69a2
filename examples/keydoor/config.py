"""The program's arguments: Hydra-style `key=value`, exactly the keys of `Config`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from examples.keydoor.env import TASKS
from jobs.errors import UserError


@dataclass(frozen=True)
class Config:
    # The nine hyperparameters of the ConSpec search.
    num_prototypes: int = 5
    learning_rate: float = 1e-3
    intrinsic_reward_scale: float = 0.5
    gamma: float = 0.99
    epsilon_decay: float = 0.995       # per episode, from EPSILON_START down to EPSILON_MIN
    hidden_dim: int = 128
    lstm_hidden_size: int = 128
    batch_size: int = 64               # episodes collected side by side per update
    memory_size: int = 5000            # states kept per outcome (success, failure) for ConSpec
    # The task and the budget.
    environment: str = "single"        # single | double | triple
    episodes: int = 3000
    max_steps_per_episode: int = 100
    # Not searched.
    seed: int = 0
    wandb: bool = False


POSITIVE_INTS = ("num_prototypes", "hidden_dim", "lstm_hidden_size", "batch_size", "memory_size", "episodes",
                 "max_steps_per_episode")
UNIT_INTERVAL = ("gamma", "epsilon_decay")          # (0, 1]
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _convert(key: str, text: str, kind: type) -> object:
    if kind is bool:
        if text.lower() in TRUE + FALSE:
            return text.lower() in TRUE
        raise UserError(f"expected true or false, got {text!r}", key=key, fix=f"write {key}=true or {key}=false")
    if kind is int:
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if not number.is_integer():
            raise UserError(f"expected a whole number, got {text!r}", key=key, fix=f"write e.g. {key}=64")
        return int(number)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise UserError(f"expected a number, got {text!r}", key=key, fix=f"write e.g. {key}=0.001") from None
    return text


def parse_args(argv: list[str]) -> Config:
    """`["learning_rate=0.001", "environment=double", ...]` -> Config; UserError on anything else."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    types = {"int": int, "float": float, "bool": bool, "str": str}
    values: dict[str, object] = {}
    for arg in argv:
        key, sep, text = arg.partition("=")
        key = key.lstrip("+")                # Hydra's `+key=value` (add a key) means the same here
        if not sep:
            raise UserError(f"argument {arg!r} is not key=value", fix="pass e.g. learning_rate=0.001")
        if key not in fields:
            raise UserError(f"unknown key {key!r}", key=key, fix="use one of: " + ", ".join(fields))
        values[key] = _convert(key, text.strip(), types[fields[key].type])
    cfg = Config(**values)
    for key in POSITIVE_INTS:
        if getattr(cfg, key) < 1:
            raise UserError(f"must be at least 1, got {getattr(cfg, key)}", key=key, fix="give a positive whole number")
    for key in UNIT_INTERVAL:
        if not 0.0 < getattr(cfg, key) <= 1.0:
            raise UserError(f"must lie in (0, 1], got {getattr(cfg, key)}", key=key, fix="e.g. 0.99")
    if not cfg.learning_rate > 0:
        raise UserError(f"must be positive, got {cfg.learning_rate}", key="learning_rate", fix="e.g. 0.001")
    if not cfg.intrinsic_reward_scale >= 0:
        raise UserError(f"must be >= 0, got {cfg.intrinsic_reward_scale}", key="intrinsic_reward_scale",
                        fix="0 turns the ConSpec reward off")
    if cfg.environment not in TASKS:
        raise UserError(f"unknown environment {cfg.environment!r}", key="environment",
                        fix="use one of: " + ", ".join(TASKS))
    return cfg
