"""Run a Python trial in a fork of the task runner instead of in a second interpreter.

A trial command `python prog.py args` or `python -m mod args`, where `python` is the interpreter
already running the runner (jobs.argv.resolve_python), would pay a whole interpreter start per
array task. A fork of the runner has that interpreter started: the child sets up what `python`
sets up -- site-packages (the runner runs with -S), sys.argv, sys.orig_argv, sys.path[0], the
working directory, the environment, stdin on /dev/null and stdout/stderr on trial.log, default
handlers for the stop signals, its own session, a fresh `__main__` -- runs the program, ends as
python ends (non-daemon threads joined, atexit callbacks, `__main__` cleared, streams flushed;
an uncaught exception printed by sys.excepthook and exit 1, SystemExit's code or message) and
leaves with os._exit. The parent watches the child as it watched a subprocess: ForkedProgram
has Popen's pid, poll() and wait().

Everything else is exec'd as before (`program()` returns None): another interpreter or another
python, options before the script (-u, -O, -X, -c, ...), a script that is not a file, a runner
started with options other than -S, one that holds threads or modules whose state a program
must not inherit (a study's optuna and logging), and every trial when SLURMSWEEP_NO_INPROC=1.

What a program could still tell apart: the modules the runner imported (some stdlib, `jobs`)
are already in sys.modules, so a file next to the script that shadows one of them (json.py) is
not the one imported; `sys.flags` is a look-alike named tuple (with no_site=0: the real type
cannot be built, and multiprocessing's spawned interpreters must not inherit -S); module
teardown beyond `__main__` is skipped (python does not promise it either).
"""
from __future__ import annotations

import os
import signal
import sys

ENV_OFF = "SLURMSWEEP_NO_INPROC"
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
# Loaded in the runner only for studies: their handlers and open journals stay out of programs.
RUNNER_STATE_MODULES = ("logging", "optuna", "torch")
EXIT_SETUP_FAILED = 127     # as a shell reports a command it could not start
EXIT_FLUSH_FAILED = 120     # what python exits with when stdout cannot be flushed at the end


class Program:
    """`python SCRIPT ARGS` (module None) or `python -m MODULE ARGS` (script None)."""

    __slots__ = ("argv", "script", "module", "args")

    def __init__(self, argv: list[str], script: str | None, module: str | None, args: list[str]) -> None:
        self.argv, self.script, self.module, self.args = argv, script, module, args


def enabled() -> bool:
    return os.environ.get(ENV_OFF, "") in ("", "0")


def same_interpreter(path: str) -> bool:
    """`path` starts the interpreter running us: sys.executable itself, or a sibling name of
    the same file (a virtualenv's bin/python3 next to bin/python; a copy elsewhere would find
    another pyvenv.cfg, so it does not count)."""
    exe = sys.executable
    if not exe or not os.path.isabs(path):
        return False
    return path == exe or (os.path.dirname(path) == os.path.dirname(exe)
                           and os.path.realpath(path) == os.path.realpath(exe))


def runner_can_fork() -> bool:
    """Started as `python [-S] run.py` or `python [-S] -m jobs.run`, one thread, no study state."""
    for arg in sys.orig_argv[1:]:
        if arg == "-m" or not arg.startswith("-"):
            break
        if arg != "-S":
            return False
    if getattr(sys.flags, "safe_path", False):  # -P: python adds no sys.path[0]; keep it simple
        return False
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return False
    return not any(name in sys.modules for name in RUNNER_STATE_MODULES)


def program(argv: list[str], cwd: str | None) -> Program | None:
    """The Python program to run in a fork, or None: exec `argv` as before."""
    if not enabled() or not runner_can_fork():
        return None
    return parse(argv, cwd)


def parse(argv: list[str], cwd: str | None) -> Program | None:
    """`argv` as `python SCRIPT ARGS` / `python -m MODULE ARGS` of this interpreter, or None."""
    if len(argv) < 2 or not same_interpreter(argv[0]):
        return None
    first = argv[1]
    if first == "-m":
        return Program(argv, None, argv[2], argv[3:]) if len(argv) > 2 else None
    if first.startswith("-m"):                                 # python accepts -mpackage.module
        return Program(argv, None, first[2:], argv[2:])
    if first.startswith("-") or first.endswith((".pyc", ".pyo")):
        return None
    if not os.path.isfile(os.path.join(cwd or os.getcwd(), first)):
        return None                                             # python says "can't open file"
    return Program(argv, first, None, argv[2:])


class ForkedProgram:
    """The parent's handle on the child: what the runner uses of subprocess.Popen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:     # reaped by wait() an instant ago
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:     # reaped by poll() in a signal handler meanwhile
                break
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode if self.returncode is not None else EXIT_SETUP_FAILED


def start(prog: Program, *, log_fd: int, env: dict[str, str], cwd: str | None) -> ForkedProgram:
    """Fork; the child runs `prog` and never returns. Returns once the child leads its own
    session, so that killpg(pid) reaches it (what Popen(start_new_session=True) guarantees)."""
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(ready_r)
        os.close(ready_w)
        raise
    if pid == 0:
        try:
            os.close(ready_r)
            _child(prog, log_fd, env, cwd, ready_w)
        finally:
            os._exit(EXIT_SETUP_FAILED)  # whatever happened, never return into the runner
    os.close(ready_w)
    os.read(ready_r, 1)                  # EOF: the child closed its end after setsid()
    os.close(ready_r)
    return ForkedProgram(pid)


# --- in the child ------------------------------------------------------------------------------

def _child(prog: Program, log_fd: int, env: dict[str, str], cwd: str | None, ready_w: int) -> None:
    import gc

    gc.freeze()   # the runner's objects: never the program's garbage, so collections skip them
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()
    os.close(ready_w)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in (null, log_fd):
        if fd > 2:
            os.close(fd)
    try:
        if cwd:
            os.chdir(cwd)
        _set_environ(env)
        _python_start(prog)
    except BaseException as exc:  # noqa: BLE001 - reported in trial.log like a failed exec
        sys.stderr.write(f"cannot start {' '.join(prog.argv[:3])} in-process: {exc!r}\n")
        sys.stderr.flush()
        os._exit(EXIT_SETUP_FAILED)
    code = _run(prog)
    code = _finish(code)
    if code is None:   # KeyboardInterrupt: python ends by killing itself with SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 128 + signal.SIGINT
    os._exit(code & 0xFF)


def _set_environ(env: dict[str, str]) -> None:
    # os.environ's setters call putenv/unsetenv, so C libraries see the same variables.
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _python_start(prog: Program) -> None:
    """What the interpreter does between its start and the program's first line."""
    del sys.path[0]   # the runner's entry: its package root, or the cwd of `python -m jobs.run`
    if sys.flags.no_site:
        if "site" not in sys.modules:
            import site

            site.main()   # what -S skipped: site-packages, .pth files, sitecustomize
        sys.flags = _flags(no_site=0)
    sys.path.insert(0, os.getcwd() if prog.module else os.path.dirname(os.path.realpath(prog.script)))
    sys.argv = ["-m" if prog.module else prog.script, *prog.args]
    sys.orig_argv = list(prog.argv)
    sys.stdout.reconfigure(line_buffering=False)   # trial.log is never a terminal
    import atexit

    atexit._clear()   # the runner's callbacks are not the program's


def _flags(**changes: int) -> tuple:
    import collections

    names = type(sys.flags).__match_args__
    return collections.namedtuple("flags", names)(*(changes.get(n, getattr(sys.flags, n)) for n in names))


def _run(prog: Program) -> int | None:
    """Run the program as `__main__`; its exit code (None: an uncaught KeyboardInterrupt)."""
    main = type(sys)("__main__")
    main.__builtins__ = sys.modules["builtins"]
    sys.modules["__main__"] = main
    try:
        if prog.module:
            import runpy

            runpy._run_module_as_main(prog.module, alter_argv=True)   # what `python -m` calls
        else:
            from importlib.machinery import SourceFileLoader
            import io

            path = os.path.abspath(prog.script)
            main.__file__, main.__cached__ = path, None
            main.__loader__ = SourceFileLoader("__main__", path)
            with io.open_code(path) as f:
                code = compile(f.read(), path, "exec", dont_inherit=True)  # not our __future__ flags
            exec(code, main.__dict__)
        return 0
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except BaseException as exc:  # noqa: BLE001 - what python prints for an uncaught exception
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_globals is globals():
            tb = tb.tb_next   # start at the program's frames, as python's traceback does
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return None if isinstance(exc, KeyboardInterrupt) else 1


def _finish(code: int | None) -> int | None:
    """Python's exit, minus the teardown of modules other than `__main__`."""
    import atexit
    import gc

    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()        # join non-daemon threads
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - python's own rule
        code = EXIT_FLUSH_FAILED
    # As python's teardown: `__main__`'s globals to None, then collect, so that files left
    # open at module level are flushed and closed by their finalizers.
    namespace = getattr(sys.modules.get("__main__"), "__dict__", {})
    for key in list(namespace):
        if key != "__builtins__":
            namespace[key] = None
    del namespace
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    return code
