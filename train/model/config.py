"""HRMConfig: the model's shape, read from the Hydra `arch` group plus the data's fields.

`HRMConfig.from_dict(arch_cfg, batch_size=..., seq_len=..., vocab_size=...,
num_puzzle_identifiers=...)` validates the `arch.*` keys and raises `UserError`
naming the key and the fix, so a bad sweep value fails before any tensor exists.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import UserError

FORWARD_DTYPES = ("bfloat16", "float16", "float32")
POS_ENCODINGS = ("rope", "learned")
LOSS_TYPES = ("stablemax_cross_entropy", "softmax_cross_entropy")

# Keys that live in the arch group but are not model shape: `name` labels the
# config, `loss` is read by the loss head (and decides whether feudal is on).
_NON_MODEL_KEYS = ("name", "loss")


@dataclass(frozen=True)
class SubgoalHeadConfig:
    # Switch for the feudal subgoal head; it is only built when the loss weight is > 0 too,
    # so `loss.feudal_loss_weight=0` reproduces the plain model exactly.
    enabled: bool = False
    # The manager (H) emits a new goal every this many L updates and holds it in between.
    manager_period: int = 4
    # Width of the goal space; None means hidden_size (then no projection of z_L is needed).
    goal_dim: int | None = None
    # Let the goal modulate the L module's input through a learned sigmoid gate.
    gating: bool = True


@dataclass(frozen=True)
class HRMConfig:
    # --- from the data
    batch_size: int
    seq_len: int
    vocab_size: int
    num_puzzle_identifiers: int
    # --- transformer
    hidden_size: int
    num_heads: int
    expansion: float
    H_layers: int
    L_layers: int
    # --- recurrence: H_cycles x L_cycles updates per ACT step
    H_cycles: int
    L_cycles: int
    # --- adaptive computation time (Q-learning halting)
    halt_max_steps: int
    halt_exploration_prob: float
    # --- embeddings and numerics
    puzzle_emb_ndim: int = 0
    pos_encodings: str = "rope"
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    # SwiGLU's inner width rounds up to a multiple of this (256 as in the reference)
    mlp_multiple_of: int = 256
    forward_dtype: str = "bfloat16"
    # --- learned sigmoid gates on the H->L and L->H injections
    use_gating: bool = False
    gate_hidden_ratio: float = 0.25
    gate_init_bias: float = -2.2
    # --- feudal subgoals
    subgoal_head: SubgoalHeadConfig = field(default_factory=SubgoalHeadConfig)

    @property
    def feudal(self) -> bool:
        """True when the subgoal head is built and used in the forward."""
        return self.subgoal_head.enabled

    @property
    def goal_dim(self) -> int:
        return self.subgoal_head.goal_dim or self.hidden_size

    @classmethod
    def from_dict(cls, arch_cfg: Mapping[str, Any], *, feudal_loss_weight: float | None = None,
                  **data_fields: Any) -> "HRMConfig":
        """Build from the `arch` group (a dict or DictConfig) and the data's fields.

        The feudal head is on when `subgoal_head.enabled` and the feudal loss weight
        (`feudal_loss_weight`, else `arch.loss.feudal_loss_weight`) is > 0.
        """
        raw = plain_dict(arch_cfg)
        known = {f.name for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in known and key not in _NON_MODEL_KEYS:
                raise UserError("unknown model setting", key=f"arch.{key}",
                                fix=f"use one of: {', '.join(sorted(known - set(data_fields)))}")
        values = {k: v for k, v in raw.items() if k in known}
        values.update(data_fields)

        if feudal_loss_weight is None:
            feudal_loss_weight = float((raw.get("loss") or {}).get("feudal_loss_weight", 0.0) or 0.0)
        values["subgoal_head"] = _subgoal(raw.get("subgoal_head") or {}, feudal_loss_weight)

        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in values and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise UserError("missing model setting", key=f"arch.{missing[0]}",
                            fix=f"set {', '.join('arch.' + m for m in missing)} in the arch config")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise UserError for values the model cannot be built with."""
        for key in ("batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers", "hidden_size",
                    "num_heads", "H_layers", "L_layers", "H_cycles", "L_cycles", "halt_max_steps",
                    "mlp_multiple_of"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"must be a positive integer, got {value!r}", key=f"arch.{key}",
                                fix="give a whole number >= 1")
        if self.hidden_size % self.num_heads:
            raise UserError(f"hidden_size {self.hidden_size} is not divisible by num_heads "
                            f"{self.num_heads}", key="arch.num_heads",
                            fix="pick num_heads that divides hidden_size")
        if (self.hidden_size // self.num_heads) % 2 and self.pos_encodings == "rope":
            raise UserError("rope needs an even head dimension", key="arch.num_heads",
                            fix="make hidden_size / num_heads even")
        if not 0.0 <= self.halt_exploration_prob <= 1.0:
            raise UserError(f"must lie in [0, 1], got {self.halt_exploration_prob}",
                            key="arch.halt_exploration_prob", fix="use a probability")
        if self.pos_encodings not in POS_ENCODINGS:
            raise UserError(f"unknown value {self.pos_encodings!r}", key="arch.pos_encodings",
                            fix=f"use one of {', '.join(POS_ENCODINGS)}")
        if self.forward_dtype not in FORWARD_DTYPES:
            raise UserError(f"unknown value {self.forward_dtype!r}", key="arch.forward_dtype",
                            fix=f"use one of {', '.join(FORWARD_DTYPES)}")
        if self.expansion <= 0 or self.gate_hidden_ratio <= 0:
            raise UserError("must be > 0", key="arch.expansion" if self.expansion <= 0
                            else "arch.gate_hidden_ratio", fix="give a positive number")
        if self.puzzle_emb_ndim < 0:
            raise UserError("must be >= 0", key="arch.puzzle_emb_ndim", fix="use 0 to disable")
        sub = self.subgoal_head
        if sub.manager_period < 1:
            raise UserError("must be >= 1", key="arch.subgoal_head.manager_period",
                            fix="give the number of L updates between goals")
        if sub.goal_dim is not None and sub.goal_dim < 1:
            raise UserError("must be >= 1 or null", key="arch.subgoal_head.goal_dim",
                            fix="use null for hidden_size")


def plain_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Turn an OmegaConf DictConfig (interpolations resolved) or a mapping into a dict."""
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # the model works without Hydra installed
        DictConfig = ()  # type: ignore[assignment]
    if DictConfig and isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    if not isinstance(cfg, Mapping):
        raise UserError(f"expected a mapping, got {type(cfg).__name__}", key="arch",
                        fix="pass the arch config group")
    return {k: (plain_dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.items()}


def _subgoal(raw: Mapping[str, Any], feudal_loss_weight: float) -> SubgoalHeadConfig:
    known = {f.name for f in dataclasses.fields(SubgoalHeadConfig)}
    for key in raw:
        if key not in known:
            raise UserError("unknown subgoal setting", key=f"arch.subgoal_head.{key}",
                            fix=f"use one of: {', '.join(sorted(known))}")
    if feudal_loss_weight < 0:
        raise UserError(f"must be >= 0, got {feudal_loss_weight}", key="arch.loss.feudal_loss_weight",
                        fix="use 0 to disable the feudal loss")
    values = dict(raw)
    # Weight 0 switches the whole head off, so it builds no parameters and draws no
    # random numbers: a weight sweep's 0 arm is exactly the baseline.
    values["enabled"] = bool(values.get("enabled", False)) and feudal_loss_weight > 0
    return SubgoalHeadConfig(**values)
