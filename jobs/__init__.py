"""slurmsweep jobs: talking to Slurm, trial state, resume and the in-task runtime.

Keep imports here light: `python -m jobs.run` starts every array task.
"""
