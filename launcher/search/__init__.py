"""Search strategies that run inside the array tasks (Optuna).

    optuna_space      Dist <-> optuna distributions; samplers and pruners by name

The ask/tell side that tasks call lives in jobs.bayes (stdlib at import); the Protein-style
summary of a finished search is in results.analysis (rollouts) and `sweep report`.
"""
