#!/usr/bin/env bash
# One shard of a sharded Fisher computation: shard I of K of the data.
# Every cluster script here runs this same command (a Slurm array task, a
# Kubernetes Indexed Job pod); the test suite runs it as local processes.
#
#   shard.sh I K        I from 1 to K
#
# Settings (environment): FISHER (the command, default `fisher`), MODEL,
# WEIGHTS, DATA (the inputs), OUT_DIR (where shard-I-of-K.safetensors goes),
# and FISHER_ARGS (the options of the run, e.g. "--structure kfac --kind mc
# --samples 1 --seed 7"; every shard must get the same ones).
set -euo pipefail
i=${1:?usage: shard.sh I K}
k=${2:?usage: shard.sh I K}
: "${MODEL:?set MODEL}" "${WEIGHTS:?set WEIGHTS}" "${DATA:?set DATA}" "${OUT_DIR:?set OUT_DIR}"
mkdir -p "$OUT_DIR"
# shellcheck disable=SC2086 # FISHER and FISHER_ARGS are word lists
${FISHER:-fisher} compute --model "$MODEL" --weights "$WEIGHTS" --data "$DATA" \
  ${FISHER_ARGS:-} --shard "$i/$k" --quiet --out "$OUT_DIR/shard-$i-of-$k.safetensors"
