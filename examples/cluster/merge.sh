#!/usr/bin/env bash
# The final step of a sharded run: merge the K shards into the Fisher of the
# whole data. `fisher merge` refuses a missing, repeated or foreign shard.
#
#   merge.sh K OUT
set -euo pipefail
k=${1:?usage: merge.sh K OUT}
out=${2:?usage: merge.sh K OUT}
: "${OUT_DIR:?set OUT_DIR}"
files=()
for ((i = 1; i <= k; i++)); do files+=("$OUT_DIR/shard-$i-of-$k.safetensors"); done
# shellcheck disable=SC2086
${FISHER:-fisher} merge "${files[@]}" --out "$out"
