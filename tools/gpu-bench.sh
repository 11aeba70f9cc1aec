#!/usr/bin/env bash
# The whole GPU measurement of issue 12 as one command, for whoever is lent a
# GPU machine (it has Python and CUDA but no Node). Everything it writes goes
# to $OUT (default ./gpu-bench-out): the adapter, the first-use and later
# whole-process times of `fisher compute --profile`, the thorough tuning, the
# benchmark with the PyTorch peer (CUDA where its torch sees the GPU), the
# matmul cores side by side, and the device Cholesky.
#
# Prepare here, once:   node tools/gpu-pack.mjs      (carry/gpu: about 32 MiB)
#                       the Vulkan loader packages in .gl (the device tool's README)
# Run on the device:    carry ["carry/gpu", ".gl"], command "bash tools/gpu-bench.sh"
#                       (--quick: the quick suite; GPU_BENCH_BUDGET_S: when to skip the later parts)
# CHOLESKY_SIZES overrides the device Cholesky's sizes (default 2048 4096 8192).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-bench-out}
mkdir -p "$OUT"
QUICK=${1:-}
PACK=$PWD/carry/gpu
[ -f "$PACK/cli.mjs" ] || { echo "gpu-bench: no carry/gpu: run node tools/gpu-pack.mjs and carry it" >&2; exit 1; }

# The Vulkan loader, where the machine has none.
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# Node and Dawn from the pack.
if [ ! -x "$PACK/node" ]; then xz -dc "$PACK/node.xz" >"$PACK/node" && chmod +x "$PACK/node"; fi
if [ ! -d "$PACK/node_modules/webgpu" ]; then mkdir -p "$PACK/node_modules" && tar -xJf "$PACK/webgpu.tar.xz" -C "$PACK/node_modules"; fi
NODE=$PACK/node
FISHER="$NODE $PACK/cli.mjs"
# A tuning cache of its own, so the first use is a first use.
export FISHER_GPU_CACHE_DIR="$OUT/cache"
rm -rf "$FISHER_GPU_CACHE_DIR"

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true; } >"$OUT/nvidia-smi.txt" 2>&1
$FISHER info >"$OUT/info.txt" 2>&1

# Whole process of the issue's workload: the first run (the first use's search included), then five more.
EX="$OUT/mlp"
$FISHER example --out-dir "$EX" --widths 784,256,256,10 >/dev/null
: >"$OUT/whole-process.txt"
for i in 1 2 3 4 5 6; do
  start=$(date +%s%N)
  $FISHER compute --model "$EX/model.json" --weights "$EX/weights.safetensors" --data "$EX/data.safetensors" --out "$EX/diag.safetensors" --profile >>"$OUT/whole-process.txt" 2>&1
  end=$(date +%s%N)
  echo "run $i: $(( (end - start) / 1000000 )) ms" | tee -a "$OUT/whole-process.txt"
done

# The benchmark with the PyTorch peers (CUDA where torch sees the GPU). Not the float64 CPU
# path: it is no GPU target, and it may take its 30 s budget on every workload.
if [ "$QUICK" = "--quick" ]; then
  $FISHER bench --quick --json "$OUT/bench.json" >"$OUT/bench.txt" 2>&1
else
  $FISHER bench --tune --json "$OUT/bench.json" --peers torch,torch-vmap >"$OUT/bench.txt" 2>&1
fi
# The rest only while the budget lasts (GPU_BENCH_BUDGET_S, default 420 s): a lent machine's
# command stops at 600 s, and what is under $OUT by then still comes back.
BUDGET=${GPU_BENCH_BUDGET_S:-420}
later() {
  if [ "$SECONDS" -lt "$BUDGET" ]; then "$@"; else echo "gpu-bench: $1 skipped at ${SECONDS} s (budget ${BUDGET} s)" | tee -a "$OUT/skipped.txt"; fi
}
cores() { $NODE "$PACK/cores.mjs" "$OUT/cores.json" >"$OUT/cores.txt" 2>&1; }
# shellcheck disable=SC2086
cholesky() { $NODE "$PACK/cholesky.mjs" "$OUT/cholesky.json" ${CHOLESKY_SIZES:-2048 4096 8192} >"$OUT/cholesky.txt" 2>&1; }
later cores
later cholesky
echo "gpu-bench: wrote $OUT in ${SECONDS} s"
