"""The shared training entrypoint (`python -m train`): HRM-ACT on puzzle data, one result JSON per run."""
