#!/usr/bin/env bash
# `diffstride train` as two ranks under PyTorch's own launcher (torchrun
# hosts the rendezvous store: every rank is its client): a few steps of the
# default run, then a resume on two ranks.
# Usage: torchrun_two_ranks.sh TORCHRUN DIFFSTRIDE_BINARY SCRATCH_FOLDER
set -u
torchrun=$1 tool=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
port=$(( 20000 + $$ % 20000 ))

# launch NAME STEP ARGS...: runs `diffstride train ARGS...` on two ranks and
# expects it to stop at step STEP. Debian's torchrun (torch 1.13, Python
# 3.11) needs explicit redirects.
launch() {
  local name=$1 step=$2
  shift 2
  "$torchrun" --nproc_per_node 2 --master_port "$port" \
    --redirects 0:1,1:1 --tee 0:1,1:1 --log_dir "$scratch/logs_$name" \
    --no_python "$tool" train "$@" > "$scratch/$name.log" 2>&1
  local status=$?
  if [ "$status" -ne 0 ] || ! tr '\r' '\n' < "$scratch/$name.log" | grep -q "stopped at step $step"; then
    echo "$name: exit status $status, expected 'stopped at step $step':" >&2
    tr '\r' '\n' < "$scratch/$name.log" | tail -20 >&2
    exit 1
  fi
}

launch first 3 --out "$scratch/run" --stop-after-steps 3
grep -q "2 processes (gloo), global batch 128 = 2 x 64" "$scratch/first.log" || {
  echo "first: no line naming the 2 processes" >&2; exit 1; }
[ -f "$scratch/run/checkpoint.pt" ] || { echo "no checkpoint" >&2; exit 1; }
launch second 5 --resume "$scratch/run" --stop-after-steps 2
echo "two ranks under torchrun: stopped at step 3, resumed, stopped at step 5"
