"""search.pruner and search.optuna_space.make_pruner: W&B's hyperband fields, pruners by name."""
from __future__ import annotations

import optuna

from search import optuna_space as osp
from search.pruner import Pruner


def test_pruner_settings_follow_wandb_hyperband():
    assert Pruner(kind="hyperband", max_iter=81, eta=3, s=2).resource_bounds() == (9, 81)
    p = Pruner(kind="hyperband", min_iter=3, eta=2, s=3)
    assert p.resource_bounds() == (3, 24)
    assert isinstance(osp.make_pruner(p), optuna.pruners.HyperbandPruner)
    assert isinstance(osp.make_pruner(Pruner.from_dict({})), optuna.pruners.NopPruner)
    assert isinstance(osp.make_pruner(Pruner.from_dict({"kind": "asha"})), optuna.pruners.SuccessiveHalvingPruner)
    assert Pruner(kind="median").active and not Pruner().active
    assert Pruner.from_dict(p.to_dict()) == p
