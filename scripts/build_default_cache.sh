#!/usr/bin/env bash
# Build the shipped default teacher cache end to end, in one command:
#   1. fine-tune the ImageNet EfficientNet-Lite0 teacher on Fashion-MNIST in two stages (skipped when the
#      shipped fp16 teacher sdr_tosc/zoo/teacher-efficientnet-lite0-fashion-mnist.safetensors exists; every
#      stage resumes an interrupted run):
#        stage 1: 4 epochs from ImageNet, lr 1e-3, label smoothing 0.1;
#        stage 2: 3 more epochs from stage 1 (fresh warm-up + cosine), lr 3e-4, no label smoothing, so the
#                 teacher fits the training set better and its soft labels are not flattened;
#   2. export it as fp16 into the zoo (+ a .json with its test accuracy and the history of both stages);
#   3. run it over the 60k training images: replay 0 clean + 3 seeded augmentations, top-10 logits,
#      64-d int8 PCA features -> sdr_tosc/zoo/cache/fashion-mnist-effnetlite0 (about 28 MB).
# Every step resumes: re-run the script after an interruption. On 2 CPU cores: ~7-10 min per teacher epoch
# (~1 h for both stages) and ~15 min for the cache. Override with env vars: PYTHON, EPOCHS, EPOCHS2, REPLAYS,
# OUT, SHARD (i/N: build one part on this machine; run all N parts into the same folder).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-4}
EPOCHS2=${EPOCHS2:-3}
REPLAYS=${REPLAYS:-4}
SHARD=${SHARD:-0/1}
OUT=${OUT:-sdr_tosc/zoo/cache/fashion-mnist-effnetlite0}
ZOO_TEACHER=sdr_tosc/zoo/teacher-efficientnet-lite0-fashion-mnist.safetensors
STAGE1=artifacts/teacher/efficientnet-lite0-fashion-mnist-stage1.safetensors
TRAINED=artifacts/teacher/efficientnet-lite0-fashion-mnist.safetensors

if [[ -f "$ZOO_TEACHER" && ! -f "$TRAINED" ]]; then
  teacher_args=(--teacher "$ZOO_TEACHER")
else
  "$PY" -m sdr_tosc.semantic.teachers --dataset fashion-mnist --epochs "$EPOCHS" --lr 1e-3 --label-smoothing 0.1 \
    --out "$STAGE1"
  teacher_args=(--finetune-teacher "$EPOCHS2" --finetune-from "$STAGE1" --finetune-lr 3e-4 --label-smoothing 0
                --teacher-out "$TRAINED" --export-teacher "$ZOO_TEACHER")
fi
"$PY" -m sdr_tosc.cli cache --dataset fashion-mnist --split train "${teacher_args[@]}" \
  --replays "$REPLAYS" --topk 10 --feature-dim 64 --shard "$SHARD" --out "$OUT"
"$PY" -m sdr_tosc.cli cache --verify "$OUT"
