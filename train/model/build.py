"""One call from the Hydra `arch` group to a ready loss head (model inside)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from train.model.config import HRMConfig, plain_dict
from train.model.hrm import HRMACT
from train.model.losses import ACTLossHead


def build_model(arch_cfg: Mapping[str, Any], *, batch_size: int, seq_len: int, vocab_size: int,
                num_puzzle_identifiers: int, loss_type: str | None = None,
                feudal_loss_weight: float | None = None) -> ACTLossHead:
    """ACTLossHead(HRMACT(config)); loss_type / feudal_loss_weight default to `arch.loss.*`.

    Pass the top-level `loss.*` values here so that model and loss head agree: the feudal
    subgoal head is built only when `arch.subgoal_head.enabled` and the weight is > 0.
    Build it on the target device (`with torch.device("cuda"): ...`) or `.to()` it before
    creating optimizers.
    """
    raw = plain_dict(arch_cfg)
    loss_cfg = raw.get("loss") or {}
    if feudal_loss_weight is None:
        feudal_loss_weight = float(loss_cfg.get("feudal_loss_weight", 0.0) or 0.0)
    if loss_type is None:
        loss_type = loss_cfg.get("loss_type", "stablemax_cross_entropy")
    config = HRMConfig.from_dict(raw, feudal_loss_weight=feudal_loss_weight, batch_size=batch_size,
                                 seq_len=seq_len, vocab_size=vocab_size,
                                 num_puzzle_identifiers=num_puzzle_identifiers)
    return ACTLossHead(HRMACT(config), loss_type=loss_type, feudal_loss_weight=feudal_loss_weight)
