"""What a search distribution is and how each kind is searched; below both `launcher` and `jobs`.

    dist       Dist, the one distribution type every dialect parser yields (stdlib)
    kinds      one class per kind: validate, sample, quantise, enumerate for a grid, hand to Optuna
    optuna     samplers and pruners by name, the search space and centre in Optuna's terms

`launcher` (plans, dialects) and `jobs` (the array tasks' ask/tell in jobs.bayes) both import
from here; nothing here imports either of them. numpy and Optuna are imported only inside the
functions that need them, so the array task's start never pays for them.
"""
