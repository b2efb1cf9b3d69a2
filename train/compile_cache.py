"""torch.compile for the trainer: whether to compile, and one compile cache per sweep.

Compiling HRM is slow (hrm_tiny on a 2-core CPU: 60-80 s) and is the same work in every array
task of a sweep that shares the shapes. Inside a sweep, `configure` points inductor's on-disk caches (FX graph cache,
AOTAutograd cache, Triton kernels) at `<sweep_dir>/compile_cache` on the shared filesystem, so
the first task pays the compile and every later task with the same shapes (the rest of a
throttled array, later stages, requeued attempts) loads the result. Tasks that start at the same
moment all compile, as before; their identical entries overwrite each other harmlessly.

Concurrent writers are safe because inductor writes every entry under a name that is the sha256
of its content, through a temporary file renamed into place (`write_atomic` in
torch/_inductor/codecache.py, used by `FxGraphCache._write_to_local_cache` and
`AOTAutogradCache._write_to_local_cache`); readers skip the dot-named temporaries, and an entry
that fails to unpickle is logged and compiled again, never used. (The temporary is named by pid
and thread: two nodes with the same pid writing one entry at the same instant could mix their
bytes -- identical bytes, as the name is the content's hash -- and at worst publish a truncated
entry, which then fails to load and is recompiled.) Triton's FileCacheManager.put
writes to a uuid-named temporary directory and os.replace()s it. C++ builds (CPU) run under
filelock locks in <cache>/locks (flock; soft-lock fallback where the filesystem has none).

Cache keys include the torch version, the graph, the compile options and (on CUDA) the GPU name,
CUDA and Triton versions, so tasks on different GPU models share the directory without mixing.
The user's own TORCHINDUCTOR_CACHE_DIR / TRITON_CACHE_DIR / TORCHINDUCTOR_FX_GRAPH_CACHE /
TORCHINDUCTOR_AUTOGRAD_CACHE win over all of this.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, MutableMapping

from jobs.errors import UserError
from jobs.runtime import TrialContext

CACHE_DIRNAME = "compile_cache"


def wanted(setting: Any, device_type: str, environ: MutableMapping[str, str] = os.environ) -> bool:
    """Compile or not, from the `compile` config key: auto = on CUDA only; DISABLE_COMPILE=1 wins."""
    if setting != "auto" and not isinstance(setting, bool):
        raise UserError(f"must be auto, true or false, got {setting!r}", key="compile",
                        fix="use compile=auto (CUDA only), compile=true or compile=false")
    if environ.get("DISABLE_COMPILE", "") not in ("", "0"):
        return False
    return device_type == "cuda" if setting == "auto" else setting


def configure(ctx: TrialContext, environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Inside a sweep, put the compile caches in its directory; returns the inductor cache directory
    this process will use (None outside a sweep: torch's defaults stay). Call before torch compiles
    anything, best before torch._dynamo is imported (some caches take the directory at import)."""
    if not ctx.in_sweep or ctx.sweep_dir is None:
        return None
    if not _user_set_cache_dir(environ):
        root = Path(ctx.sweep_dir).resolve() / CACHE_DIRNAME
        environ["TORCHINDUCTOR_CACHE_DIR"] = str(root)
        # Inductor's own kernels go to <cache>/triton/<device> anyway; this catches other Triton JIT too.
        environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
    # On by default in recent torch; forced here unless the user chose (their env var was read at import).
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    if "TORCHINDUCTOR_FX_GRAPH_CACHE" not in environ:
        inductor_config.fx_graph_cache = True
    if "TORCHINDUCTOR_AUTOGRAD_CACHE" not in environ:
        functorch_config.enable_autograd_cache = True
    return Path(environ["TORCHINDUCTOR_CACHE_DIR"])


def _user_set_cache_dir(environ: MutableMapping[str, str]) -> bool:
    value = environ.get("TORCHINDUCTOR_CACHE_DIR")
    if value is None:
        return False
    if "torch._dynamo" not in sys.modules:
        return True
    # Importing torch._dynamo (building any optimizer does) writes torch's default into the variable.
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    return value != os.path.abspath(default_cache_dir())


def cache_stats() -> dict[str, int]:
    """Hits and misses of the FX graph and AOTAutograd caches in this process so far."""
    from torch._dynamo.utils import counters
    return {"fx_hit": counters["inductor"]["fxgraph_cache_hit"],
            "fx_miss": counters["inductor"]["fxgraph_cache_miss"],
            "aot_hit": counters["aot_autograd"]["autograd_cache_hit"],
            "aot_miss": counters["aot_autograd"]["autograd_cache_miss"]}


def describe(stats: dict[str, int]) -> str:
    return (f"FX graph cache {stats['fx_hit']} hits / {stats['fx_miss']} misses, "
            f"AOTAutograd cache {stats['aot_hit']} hits / {stats['aot_miss']} misses")
