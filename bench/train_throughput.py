"""Benchmark: the trainer's optimizer step at the shapes of issue 8 (goal: 42 ms/step, batch 768, one H100).

    .venv/bin/python bench/train_throughput.py                      # CUDA: hrm_v1, batch 768 and 256, bf16
    .venv/bin/python bench/train_throughput.py --device cpu --arch hrm_tiny --batch 64
    options: --compare-eager  --steps N  --warmup N  --no-compile  --no-cache-check  [arch.key=value ...]

What is timed: `train.steps.train_step` itself -- HRM-ACT inside ACTLossHead, AdamATan2 and the
sparse puzzle-embedding sign-SGD, built by the trainer's own build_model / build_optimizers from
configs/ (arch=<--arch>, Hydra overrides as extra arguments) -- on Sudoku shapes: 81 cells plus the
puzzle-embedding position, vocab 11, one puzzle identifier (as sudoku-extreme), the arch's
forward_dtype (bfloat16 for hrm_v1). As in the loop, the batch is copied from the host every step
and the ACT carry runs on. The first --warmup steps (the first pays torch.compile) are not timed;
then 3 blocks of --steps steps are timed (compiled and eager blocks alternating with
--compare-eager), each step on its own (median, range) and each block as a whole (mean, after a
final sync). On a shared CPU, OMP_NUM_THREADS=1 gives steadier numbers.

Per batch size it prints ms/step, sequences/s, model FLOPs per step and MFU, peak memory and the
compile warm-up (the first step's time, with the compile cache's hits and misses); --compare-eager
runs the same steps eagerly and prints compiled/eager.

FLOPs per step: torch.utils.flop_counter.FlopCounterMode over one eager step -- every matmul and
attention product, forward and backward, including the no-grad H/L cycles and the Q-target forward
of training (2*m*n*k per matmul; elementwise work not counted, as usual for MFU). For hrm_v1 it
agrees within 0.2% with the analytic count 2*B*S*(P_block + 2*S*d) * (48 + 2*8): per position and
block pass 2*P_block for the weights (P_block = 3.41M) and 4*S*d for attention (S = 82 positions,
d = 512); 48 forward block passes (one ACT step is H_cycles*L_cycles L updates plus H_cycles H
updates of 4 blocks = 24, run twice in training: the step and the Q target) and a backward through
the last L and H update only (8 blocks at twice the forward) -- 28.2 TFLOP per step at batch 768.
The optional flash_attn package's kernel is not known to FlopCounterMode (attention is ~2.4%).
MFU = FLOPs per step / time per step / peak; the peak is measured in this run: a bf16 8192^3 matmul
on CUDA, a float32 1024^3 matmul on CPU, the best of short trials. Peak memory: torch.cuda.max_memory_allocated over the
timed steps (CUDA); the process's ru_maxrss (CPU, compile included).

Cold vs warm start (with compile, first batch size): this script with --first-step-only, twice, in
fresh subprocesses whose environment looks like an array task of one sweep (SWEEP_DIR a fresh
directory), so train.compile_cache puts the compile cache there: the first compiles from nothing,
the second loads what the first wrote. Time to first step = subprocess start to the end of its
first step (imports, model, compile, step). The in-process measurement then reuses that cache.
No pass/fail: numbers only.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from jobs import runtime  # noqa: E402
from train import compile_cache  # noqa: E402
from train.model import layers  # noqa: E402
from train.pretrain import CONFIG_DIR, build_model, build_optimizers  # noqa: E402
from train.steps import train_step  # noqa: E402

GOAL_MS = 42.0  # issue 8, batch 768 on one H100
ROUNDS = 3  # timed blocks of --steps steps per variant, compiled and eager alternating
SEQ_LEN, VOCAB, PUZZLE_IDS = 81, 11, 1
CACHE_VARS = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
              "TORCHINDUCTOR_AUTOGRAD_CACHE", "DISABLE_COMPILE")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--arch", default=None, help="configs/arch/<name>.yaml (default: hrm_v1 on cuda, hrm_tiny on cpu)")
    p.add_argument("--batch", type=int, nargs="+", default=None, help="default: 768 256 on cuda, 64 on cpu")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on cuda, 5 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 on cuda, 2 on cpu)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="time the eager step only")
    p.add_argument("--compare-eager", action="store_true", help="also time the eager step: compiled/eager")
    p.add_argument("--no-cache-check", dest="cache_check", action="store_false",
                   help="skip the cold/warm time-to-first-step subprocesses")
    p.add_argument("--first-step-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the trainer config, e.g. arch.halt_max_steps=8")
    args = p.parse_args(argv)
    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    args.device = "cuda" if cuda else "cpu"
    args.arch = args.arch or ("hrm_v1" if cuda else "hrm_tiny")
    args.batch = args.batch or ([768, 256] if cuda else [64])
    args.steps = args.steps or (20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 2)
    return args


# --- building the real step -----------------------------------------------------------------


def load_config(arch: str, overrides: list[str]) -> dict[str, Any]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name="config", overrides=[f"arch={arch}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


class Setup:
    """The trainer's model and optimizers for one batch size, and a host batch to feed it."""

    def __init__(self, cfg: dict[str, Any], batch_size: int, device: torch.device):
        self.device, self.batch_size = device, batch_size
        meta = SimpleNamespace(seq_len=SEQ_LEN, vocab_size=VOCAB, num_puzzle_identifiers=PUZZLE_IDS)
        self.model = build_model(cfg, meta, batch_size, device)
        self.optimizers, self.lrs = build_optimizers(self.model, cfg, world_size=1)
        g = torch.Generator().manual_seed(0)
        self.host_batch = {
            "inputs": torch.randint(1, VOCAB, (batch_size, SEQ_LEN), generator=g, dtype=torch.int32),
            "labels": torch.randint(2, VOCAB, (batch_size, SEQ_LEN), generator=g, dtype=torch.int32),
            "puzzle_identifiers": torch.zeros(batch_size, dtype=torch.int32)}
        self.carry = self.model.initial_carry(self.batch())
        self.model.train()

    def batch(self) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in self.host_batch.items()}

    def step(self, model: torch.nn.Module) -> float:
        """One training step as the loop runs it; returns its wall time in seconds."""
        started = time.perf_counter()
        self.carry, _, _ = train_step(model, self.carry, self.batch(), self.optimizers, self.lrs,
                                         self.batch_size, 1, [0.0, 0.0])
        return time.perf_counter() - started


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(setup: Setup) -> int:
    """Model FLOPs of one training step (one eager step under FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    def cpu_sdpa(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return sdpa_flop_count(q, k, v)

    def cpu_sdpa_backward(grad: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return sdpa_backward_flop_count(grad, q, k, v)

    # SDPA's CPU kernel has no formula in torch's registry; its CUDA kernels do.
    aten = torch.ops.aten
    custom = {aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa,
              aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_sdpa_backward}
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        setup.step(setup.model)
    return int(counter.get_total_flops())


def peak_matmul(device: torch.device) -> tuple[float, str]:
    """FLOP/s of a big matmul on this device, measured now: bf16 on CUDA, float32 on CPU."""
    n, dtype, what = (8192, torch.bfloat16, "bf16") if device.type == "cuda" else (1024, torch.float32, "float32")
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best, started = 0.0, time.perf_counter()
    while time.perf_counter() - started < 2.0:  # the best of short trials: a peak, whatever else runs
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        sync(device)
        best = max(best, 2 * n ** 3 * 5 / (time.perf_counter() - t))
    return best, f"{what} {n}^3 matmul, best of 5-matmul trials over 2 s"


def peak_memory(device: torch.device) -> int:
    """Bytes: the most allocated on the GPU since the last reset, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- measurements ---------------------------------------------------------------------------


def warm_up(setup: Setup, model: torch.nn.Module, steps: int) -> dict[str, Any]:
    """The untimed first steps; the first one's time and what the compile cache did meanwhile."""
    before = compile_cache.cache_stats()
    first = setup.step(model)
    for _ in range(steps - 1):
        setup.step(model)
    sync(setup.device)
    after = compile_cache.cache_stats()
    return {"first_s": first, "cache": {k: after[k] - before[k] for k in after}, "times": [], "total_s": 0.0,
            "memory": 0, "on_gpu": setup.device.type == "cuda"}


def time_block(setup: Setup, model: torch.nn.Module, steps: int, into: dict[str, Any]) -> None:
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    started = time.perf_counter()
    into["times"] += [setup.step(model) for _ in range(steps)]
    sync(setup.device)
    into["total_s"] += time.perf_counter() - started
    into["memory"] = max(into["memory"], peak_memory(setup.device))


def first_step_only(args: argparse.Namespace) -> None:
    """Child process: build, compile, one step; print when it ended and what the compile cache did."""
    compile_cache.configure(runtime.context())
    setup = Setup(load_config(args.arch, args.overrides), args.batch[0], torch.device(args.device))
    model = torch.compile(setup.model, dynamic=False)
    first = setup.step(model)
    sync(setup.device)
    print(json.dumps({"ended": time.time(), "first_step_s": first, **compile_cache.cache_stats()}))


def cold_and_warm(args: argparse.Namespace, sweep_dir: Path) -> list[dict[str, Any]]:
    """Two fresh subprocesses, as two array tasks of one sweep: the first compiles, the second loads."""
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARS}
    env.update(SWEEP_DIR=str(sweep_dir), SWEEP_TRIAL_ID="bench", SWEEP_RESULT_FILE=str(sweep_dir / "result.json"))
    cmd = [sys.executable, __file__, "--first-step-only", "--device", args.device, "--arch", args.arch,
           "--batch", str(args.batch[0]), *args.overrides]
    runs = []
    for _ in ("cold", "warm"):
        started = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"first-step subprocess failed:\n{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append({**out, "to_first_step_s": out["ended"] - started})
    return runs


def fmt_run(name: str, r: dict[str, Any], flops: int, peak: float, batch: int) -> str:
    times = r["times"]
    median = statistics.median(times)
    rate = flops / median
    return (f"  {name:8s} {median * 1e3:8.1f} ms/step (median of {len(times)}; {min(times) * 1e3:.1f}.."
            f"{max(times) * 1e3:.1f}, mean {r['total_s'] / len(times) * 1e3:.1f}), {batch / median:,.0f} seq/s, "
            f"{rate / 1e12:.2f} TFLOP/s = {100 * rate / peak:.1f}% MFU, peak memory {r['memory'] / 2**30:.2f} GiB "
            f"({'allocated' if r['on_gpu'] else 'RSS of the process'})")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.first_step_only:
        first_step_only(args)
        return
    device = torch.device(args.device)
    cfg = load_config(args.arch, args.overrides)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"torch threads: {torch.get_num_threads()}"
    print(f"train_throughput: arch {' '.join([args.arch, *args.overrides])} ({cfg['arch']['forward_dtype']}), "
          f"{args.device} ({name}), torch {torch.__version__}, compile {'on' if args.compile else 'off'}, "
          f"{args.warmup} warm-up steps, then {ROUNDS} blocks of {args.steps} timed steps")
    if layers.flash_attn_func is not None and device.type == "cuda":
        print("  note: flash_attn is installed; FlopCounterMode does not count its attention FLOPs (~2.4%)")

    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
        sweep_dir = Path(tmp)
        if args.compile and args.cache_check:
            cold, warm = cold_and_warm(args, sweep_dir)
            print(f"time to first step, fresh subprocesses as two array tasks of one sweep (batch {args.batch[0]}): "
                  f"cold {cold['to_first_step_s']:.1f} s (first step {cold['first_step_s']:.1f} s; "
                  f"{compile_cache.describe(cold)}), warm {warm['to_first_step_s']:.1f} s (first step "
                  f"{warm['first_step_s']:.1f} s; {compile_cache.describe(warm)}): warm/cold "
                  f"{warm['to_first_step_s'] / cold['to_first_step_s']:.2f}x", flush=True)
        # In this process too: the cache those tasks wrote (or a fresh one), never the user's.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(sweep_dir / compile_cache.CACHE_DIRNAME)

        peak, what = peak_matmul(device)
        print(f"peak: {peak / 1e12:.2f} TFLOP/s ({what}, measured now)", flush=True)
        for batch in args.batch:
            setup = Setup(cfg, batch, device)
            flops = count_flops(setup)
            print(f"batch {batch}: {flops / 1e12:.3f} TFLOP per step (FlopCounterMode)", flush=True)
            models = {}
            if args.compile:
                models["compiled"] = torch.compile(setup.model, dynamic=False)
            if args.compare_eager or not args.compile:
                models["eager"] = setup.model
            results = {label: warm_up(setup, model, args.warmup) for label, model in models.items()}
            # Alternating blocks, so that a change in the machine's load hits both alike.
            for _ in range(ROUNDS):
                for label, model in models.items():
                    time_block(setup, model, args.steps, results[label])
            for label, r in results.items():
                print(fmt_run(label, r, flops, peak, batch), flush=True)
            if "compiled" in results:
                c = results["compiled"]
                print(f"  compile warm-up (first compiled step) {c['first_s']:.1f} s: "
                      f"{compile_cache.describe(c['cache'])}")
            medians = {label: statistics.median(r["times"]) for label, r in results.items()}
            if len(results) == 2:
                print(f"  compiled/eager {medians['compiled'] / medians['eager']:.2f}x")
            best = min(medians.values())
            if device.type == "cuda" and batch == 768:
                print(f"  goal {GOAL_MS:.0f} ms/step (issue 8, one H100): {best * 1e3 / GOAL_MS:.2f}x the goal")
            del setup, results
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
