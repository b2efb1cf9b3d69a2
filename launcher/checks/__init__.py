"""Checks `sweep launch` runs on planned trials before anything is written or submitted.

    trainer_overrides.check_overrides(spec, trials)   every override against the trainer's Hydra config
"""
