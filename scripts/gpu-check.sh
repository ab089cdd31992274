#!/usr/bin/env bash
# gpu-check: does the GPU execution provider give the CPU provider's results, and how
# fast is it? One prepared run, under 5 minutes on a GPU machine:
#   1. build Gibbon and the test binaries (when Go is here),
#   2. run the GPU-vs-CPU correctness tests with the GPU provider required
#      (forward, backward ops, an autodiff gradient graph, the placement report),
#      then the autodiff gradient tests on the GPU provider,
#   3. print throughput on the CPU and the GPU provider from the same run:
#      gradient graph images/s, PGD-10 images/s, attack network images/s.
#
# Usage:
#   scripts/gpu-check.sh              build if Go is here, then check (go tool task gpu-check)
#   scripts/gpu-check.sh --build      only build into $GPU_CHECK_BIN and pack it with the
#                                     ONNX Runtime library as gpu-check.tar.gz, for a machine
#                                     without Go or network: carry that file, then run
#   scripts/gpu-check.sh --run        only run, from $GPU_CHECK_BIN (unpacked from
#                                     $GPU_CHECK_BIN.tar.gz when missing)
# On a lent device machine (no Go, no network; see the device tool's README): run
# --build here, carry bin/gpu-check.tar.gz (about 30 MB) and, for WebGPU, the Vulkan
# loader debs in .gl (unpacked with dpkg -x before the run), then scripts/gpu-check.sh --run.
# Environment:
#   GIBBON_GPU_EP   webgpu (default) or cuda
#   GPU_CHECK_BIN   where the binaries go (default bin/gpu-check)
#   GPU_CHECK_PGD   the PGD-10 benchmarks to run (default 'PGD10/.*/batch32')
# WebGPU needs a Vulkan loader (libvulkan.so.1) and a driver: without VK_DRIVER_FILES
# the NVIDIA ICD is used when found. CUDA needs ORT's CUDA provider libraries beside the
# library (see `gibbon runtime info --ep cuda`).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
EP=${GIBBON_GPU_EP:-webgpu}
BIN=${GPU_CHECK_BIN:-bin/gpu-check}
case "$BIN" in /*) ;; *) BIN=$root/$BIN ;; esac
PGD=${GPU_CHECK_PGD:-PGD10/.*/batch32}
mode=${1:-all}
status=0

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*"; status=1; }

# Test binaries: package dir -> binary name.
pkgs=(inference inference/autodiff inference/attack inference/attacknet)

build() {
  step "build"
  mkdir -p "$BIN" || exit 1
  go build -ldflags='-s -w' -o "$BIN/gibbon" . || exit 1
  for p in "${pkgs[@]}"; do
    [ -d "$p" ] || continue
    local out=$BIN/$(basename "$p").test
    rm -f "$out"
    if ! go test -c -ldflags='-s -w' -o "$out" "./$p"; then
      [ "$p" = inference ] && exit 1
      fail "cannot build the $p tests: their steps are skipped"
    fi
  done
  lib=$("$BIN/gibbon" runtime info 2>/dev/null | sed -n 's/^library *\(.*\) (from .*)$/\1/p')
  if [ -z "$lib" ]; then
    echo "no ONNX Runtime library: run go tool task runtime first"; exit 1
  fi
  cp "$lib" "$BIN/" || exit 1
  ls -la "$BIN"
}

pack() {
  tar -C "$(dirname "$BIN")" -czf "$BIN.tar.gz" "$(basename "$BIN")" || exit 1
  ls -la "$BIN.tar.gz"
}

# run_bench LABEL DIR BINARY ENV... -- ARGS: one benchmark run, its result lines only.
run_bench() {
  local label=$1 dir=$2 bin=$3; shift 3
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  echo "-- $label"
  (cd "$root/$dir" && env "${envs[@]}" timeout 150 "$BIN/$bin" -test.run '^$' -test.count=1 "$@" 2>&1) |
    grep -E 'images/s|^(FAIL|---|panic)|Error|not start' || fail "$label"
}

check() {
  if [ ! -x "$BIN/gibbon" ] && [ -f "$BIN.tar.gz" ]; then
    tar -C "$(dirname "$BIN")" -xzf "$BIN.tar.gz" || exit 1
  fi
  [ -x "$BIN/gibbon" ] || { echo "no binaries in $BIN: run scripts/gpu-check.sh --build where Go is"; exit 1; }
  local lib
  lib=$(ls "$BIN"/libonnxruntime* "$BIN"/onnxruntime.dll 2>/dev/null | head -1)
  if [ -z "${GIBBON_ORT_LIB:-}" ] && [ -n "$lib" ]; then export GIBBON_ORT_LIB=$lib; fi

  if [ "$EP" = webgpu ]; then
    if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
      for f in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
        if [ -f "$f" ]; then export VK_DRIVER_FILES=$f VK_ICD_FILENAMES=$f; break; fi
      done
    fi
    if [ -z "${XDG_RUNTIME_DIR:-}" ]; then XDG_RUNTIME_DIR=$(mktemp -d); export XDG_RUNTIME_DIR; fi
    if command -v ldconfig >/dev/null && ! ldconfig -p | grep 'libvulkan.so.1' >/dev/null; then
      echo "warning: no libvulkan.so.1 on this machine: WebGPU cannot start"
    fi
  fi

  step "device"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
  echo "provider $EP; VK_DRIVER_FILES=${VK_DRIVER_FILES:-} VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-}"

  step "runtime"
  "$BIN/gibbon" runtime info --ep "$EP" || fail "runtime info"

  step "correctness: $EP against cpu (provider required)"
  (cd "$root/inference" && GIBBON_GPU_TEST=$EP timeout 180 "$BIN/inference.test" -test.run 'GPU' -test.count=1 -test.v 2>&1) |
    grep -E '^(---|ok|FAIL|PASS|panic)|rel L2|handed|nodes per|required|Error' || true
  [ "${PIPESTATUS[0]}" = 0 ] || fail "GPU correctness tests"

  if [ -x "$BIN/autodiff.test" ]; then
    step "gradient correctness: autodiff tests on $EP"
    (cd "$root/inference/autodiff" && GIBBON_EP=$EP timeout 120 "$BIN/autodiff.test" -test.count=1 2>&1) | tail -5
    [ "${PIPESTATUS[0]}" = 0 ] || fail "autodiff tests on $EP (exit 124: over the time allowed)"
  fi

  step "throughput: cpu and $EP in the same run"
  run_bench "gradient graph, MobileNetV2-shaped block 64x64, batch 16" inference inference.test GIBBON_GPU_TEST=$EP -- -test.bench 'GPUGradient' -test.benchtime 5x
  if [ -x "$BIN/attack.test" ]; then
    for ep in cpu "$EP"; do
      run_bench "PGD-10 on $ep" inference/attack attack.test GIBBON_EP=$ep -- -test.bench "$PGD" -test.benchtime 2x
    done
  else
    echo "-- PGD-10: inference/attack has no test binary here"
  fi
  if [ -x "$BIN/attacknet.test" ] && "$BIN/attacknet.test" -test.list 'Benchmark' 2>/dev/null | grep -q '^Benchmark'; then
    for ep in cpu "$EP"; do
      run_bench "attack network on $ep" inference/attacknet attacknet.test GIBBON_EP=$ep -- -test.bench . -test.benchtime 3x
    done
  else
    # TODO(attack network): inference/attacknet has no benchmark yet; when it has one
    # (images/s metric), this step runs it on cpu and the GPU provider like PGD-10.
    echo "-- attack network: no benchmark in inference/attacknet yet"
  fi
}

case "$mode" in
  --build) build; pack; exit $status ;;
  --run) check ;;
  all)
    if command -v go >/dev/null; then build; fi
    check ;;
  *) echo "usage: scripts/gpu-check.sh [--build|--run]"; exit 2 ;;
esac
step "result"
if [ $status = 0 ]; then echo "gpu-check passed ($EP)"; else echo "gpu-check FAILED ($EP)"; fi
exit $status
