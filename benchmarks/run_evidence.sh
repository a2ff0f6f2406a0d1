#!/usr/bin/env bash
# The CIFAR-10 evidence runs (docs/results.md, "Full CPU schedule"), one run at a
# time, in priority order: the headline ResNet-20 cells for seeds 0, 1, 2 first, then
# the other ResNet-20 cells, then ShuffleNetV2. Every finished run appends its row to
# benchmarks/results/cifar_accuracy.json and saves its model; a rerun skips what is
# done, so a killed sweep resumes where it stopped (a run killed midway restarts).
#
#   nohup bash benchmarks/run_evidence.sh > evidence.log 2>&1 &
#
# CODE=/path/to/a/pinned/checkout runs that checkout's tf_precrop and benchmark
# script (results still land in this repository), so that editing this working
# tree while the sweep runs cannot change the runs. WAIT_PID=N waits for process N
# (an earlier run still finishing) before starting.
set -euo pipefail
cd "$(dirname "$0")/.."
CODE="${CODE:-$PWD}"
if [ -n "${WAIT_PID:-}" ]; then
  while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 20; done
fi
run() { PYTHONPATH="$CODE" python "$CODE/benchmarks/cifar_accuracy.py" --recipe cpu \
          --train-size 45000 --save-dir benchmarks/results/models "$@"; }
# The headline cells first, seed by seed: uniform width and PreCrop (SynExp) at 10x
# fewer MACs, and (issue #12) PreCrop at the measured LiteRT latency of that
# uniform-width model. Then the remaining cells.
headline() {
  run --model resnet20 --variants uniform_width precrop_synexp --budgets macs --compress 10 --seeds "$1"
  run --model resnet20 --variants precrop_latency --budgets macs --compress 10 --seeds "$1"
}
rest() {
  local s=$1 dense=$2 masked=$3
  if [ "$dense" = 1 ]; then run --model resnet20 --variants dense --seeds "$s"; fi
  run --model resnet20 --variants precrop_synexp --budgets params --compress 10 --seeds "$s"
  run --model resnet20 --variants uniform_width precrop_synexp --budgets macs --compress 20 --seeds "$s"
  if [ "$masked" = 1 ]; then
    run --model resnet20 --variants synflow_masked --budgets params --compress 10 20 --seeds "$s"
  fi
}
headline 0
headline 1
headline 2
rest 0 1 1
rest 1 1 1
rest 2 0 0
run --model shufflenet_v2 --variants uniform_width precrop_synexp --budgets macs --compress 2 --seeds 0 1
