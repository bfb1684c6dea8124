#!/usr/bin/env bash
# Build the shipped default teacher cache end to end, in one command:
#   1. fine-tune the ImageNet EfficientNet-Lite0 teacher on Fashion-MNIST (skipped when the shipped fp16 teacher
#      sdr_tosc/zoo/teacher-efficientnet-lite0-fashion-mnist.safetensors exists; resumes an interrupted run);
#   2. export it as fp16 into the zoo (+ a .json with its test accuracy);
#   3. run it over the 60k training images: replay 0 clean + 3 seeded augmentations, top-10 logits,
#      64-d int8 PCA features -> sdr_tosc/zoo/cache/fashion-mnist-effnetlite0 (about 28 MB).
# Every step resumes: re-run the script after an interruption. Takes ~30 min on 2 CPU cores for the
# fine-tune (4 epochs) and ~15-30 min for the cache. Override with env vars: PYTHON, EPOCHS, REPLAYS, OUT,
# SHARD (i/N: build one part on this machine; run all N parts into the same folder).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-4}
REPLAYS=${REPLAYS:-4}
SHARD=${SHARD:-0/1}
OUT=${OUT:-sdr_tosc/zoo/cache/fashion-mnist-effnetlite0}
ZOO_TEACHER=sdr_tosc/zoo/teacher-efficientnet-lite0-fashion-mnist.safetensors
TRAINED=artifacts/teacher/efficientnet-lite0-fashion-mnist.safetensors

if [[ -f "$ZOO_TEACHER" && ! -f "$TRAINED" ]]; then
  teacher_args=(--teacher "$ZOO_TEACHER")
else
  teacher_args=(--finetune-teacher "$EPOCHS" --teacher-out "$TRAINED" --export-teacher "$ZOO_TEACHER")
fi
"$PY" -m sdr_tosc.cli cache --dataset fashion-mnist --split train "${teacher_args[@]}" \
  --replays "$REPLAYS" --topk 10 --feature-dim 64 --shard "$SHARD" --out "$OUT"
"$PY" -m sdr_tosc.cli cache --verify "$OUT"
