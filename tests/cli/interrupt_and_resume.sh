#!/usr/bin/env bash
# Ctrl-C during `diffstride train` writes a checkpoint and exits 0; `--resume`
# continues from it, past the step where the first run stopped.
# Usage: interrupt_and_resume.sh DIFFSTRIDE_BINARY SCRATCH_FOLDER
set -u
tool=$1
run=$2/run
rm -rf "$2" && mkdir -p "$2"

# Starts the tool in the background, waits until it has made progress, sends
# SIGINT, and prints the step it stopped at.
interrupt() {
  "$@" > "$2.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do
    sleep 0.5
    if tr '\r' '\n' < "$2.log" | grep -q "step [0-9]*/"; then break; fi
  done
  kill -INT "$pid"
  wait "$pid"
  local status=$?
  if [ "$status" -ne 0 ]; then
    echo "exit status $status after SIGINT" >&2
    cat "$2.log" >&2
    exit 1
  fi
  # During a step, or during an epoch's evaluation after its last step.
  grep -oE "stopped (at|while evaluating epoch [0-9]+ after) step [0-9]+" "$2.log" | grep -o "[0-9]*$"
}

first=$(interrupt "$tool" train --out "$run" --set train.threads=2)
[ -n "$first" ] && [ -f "$run/checkpoint.pt" ] || { echo "no checkpoint after SIGINT" >&2; exit 1; }
second=$(interrupt "$tool" train --resume "$run")
[ -n "$second" ] || { echo "the resumed run did not stop cleanly" >&2; exit 1; }
if [ "$second" -le "$first" ]; then
  echo "resumed run stopped at step $second, not after $first" >&2
  exit 1
fi
echo "interrupted at step $first, resumed and interrupted at step $second"
