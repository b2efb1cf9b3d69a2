#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run (a lent GPU machine is short-lived: one prepared script).
#
#   scripts/gpu_check.sh            # logs under $OUT (default /tmp/gpu_check), a summary on stdout
#
# 1. the trainer's tests with CUDA visible (training and exact resume on CUDA, the optimizer
#    against the CPU rule in fp32 and bf16, one host sync per training step)    -> pytest.log
# 2. NCCL: a one-rank process group under torchrun, all_reduce + barrier -> nccl.log
#    (one GPU allows world size 1 only: NCCL refuses two ranks on one device)
# 3. the trainer on CUDA under torchrun (hrm_v1, batch 768, compiled), then run on from its own
#    checkpoint to a later max_steps: "resumed from ... at step N"          -> trainer.log
# 4. bench/train_throughput.py (issue 8's goal: 42 ms/step at batch 768)  -> throughput.log
#
# Python packages the machine lacks travel as wheels in .whl/ (installed to /tmp/site first).
# Each step has its own time limit so one slow step cannot eat the others' time.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
: >"$OUT/summary.txt"
BUDGET_S=${BUDGET_S:-560}  # the whole script; the throughput bench gets what is left
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
WORK=$(mktemp -d)
step() { echo; echo "=== $1 ($(date +%T))"; }
summary() { echo "--- $1: $2" | tee -a "$OUT/summary.txt"; }

step environment
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())'

step "the trainer's tests on CUDA"
# device=null in the trainer means CUDA here: training, resume-exactly and the CUDA-only tests (the
# optimizer against the CPU rule, host syncs per step) run on the GPU; the gloo test stays on the CPU.
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -rs -n 8 tests/train >"$OUT/pytest.log" 2>&1
summary pytest "rc $? ($(tail -n 1 "$OUT/pytest.log"))"

step "NCCL, one rank"
cat >"$WORK/nccl.py" <<'EOF'
import os, torch, torch.distributed as dist
dist.init_process_group("nccl")
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
x = torch.full((4,), 1.0 + dist.get_rank(), device="cuda")
dist.all_reduce(x)
dist.barrier()
print("nccl", dist.get_backend(), "world", dist.get_world_size(), "all_reduce", x.tolist(), "nccl version", torch.cuda.nccl.version())
dist.destroy_process_group()
EOF
timeout 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 "$WORK/nccl.py" >"$OUT/nccl.log" 2>&1
summary nccl "rc $? ($(grep -m1 '^nccl' "$OUT/nccl.log"))"

step "trainer on CUDA under torchrun, then resumed"
"$PY" -m train.data.sudoku --output-dir "$WORK/data" --subsample-size 1000 --num-aug 8 --max-blanks 1 \
  --test-size 200 --seed 0 >"$OUT/trainer.log" 2>&1
run_trainer() {  # $1 = max_steps
  timeout 150 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m train ${TRAIN_ARGS:-arch=hrm_v1 global_batch_size=768} \
    data_path="$WORK/data" max_steps="$1" lr_warmup_steps=20 log_interval=10 \
    eval_interval=null run_dir="$WORK/run" >>"$OUT/trainer.log" 2>&1
}
started=$SECONDS
run_trainer 60; rc1=$?
first=$((SECONDS - started))
run_trainer 120; rc2=$?
summary trainer "rc $rc1 then $rc2; ${first} s and $((SECONDS - started - first)) s; $(grep -m1 -o 'resumed from .*' "$OUT/trainer.log")"
cp "$WORK/run/metrics.json" "$OUT/metrics.json" 2>/dev/null && summary metrics "$(head -c 400 "$OUT/metrics.json")"
cp "$WORK/run/progress.jsonl" "$OUT/progress.jsonl" 2>/dev/null

step "bench/train_throughput.py"
left=$((BUDGET_S - SECONDS))  # timeout refuses a negative limit and takes 0 as none
if ((left > 0)); then
  timeout "$left" "$PY" bench/train_throughput.py ${THROUGHPUT_ARGS:---batch 768 256 --compare-eager} 2>&1 | tee "$OUT/throughput.log"
  summary throughput "rc ${PIPESTATUS[0]}"
else
  summary throughput "skipped: the earlier steps used all of BUDGET_S=$BUDGET_S s"
fi
echo; cat "$OUT/summary.txt"
