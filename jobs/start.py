"""The array task's entry file: `python -S <root>/jobs/start.py SWEEP_DIR TASK_ID --array TOKEN`.

Python compiles the file it is started with on every start (a script's bytecode is never
cached); this file is a few lines, and the runner itself (jobs.run) loads from __pycache__.
-S skips site (and the .pth files it reads), most of an interpreter's start: the package root
(a checkout or site-packages) goes on sys.path instead, enough for the stdlib-only `jobs`.
"""
import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from jobs.run import exit_now, main  # noqa: E402

exit_now(main())
