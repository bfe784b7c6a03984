#!/usr/bin/env bash
# Low-resolution study on LFW (docs/benchmarks.md, "Low-resolution study"): one small IR-SE
# network trained on the people of View 2 people folds 0-4 at low resolution (36 px), on
# up-scaled low resolution, on high resolution and on mixed resolution; the high-resolution
# network fine-tuned on up-scaled low-resolution faces (head only, output layer + head,
# everything); every run scored on the pairs of folds 5-9, faces as they are and at 36 px.
#   scripts/resolution_study.sh [LFW_ROOT]       THREADS=1 DEVICE=cuda ... as needed
set -euo pipefail
cd "$(dirname "$0")/.."
LFW=${1:-${LFW:-../shared/data/lfw}}
source scripts/common.sh
prepare_lfw

for r in lr36 uplr112 hr112 mixed112; do
    train "resolution_$r" "runs/resolution_$r"
done
# fine-tuning the HR network on up-scaled LR faces: a quarter of the budget, a tenth of the rate
last=$(ls runs/resolution_hr112/checkpoints/checkpoint_*.pt | tail -1)
finetune=(--set train.init_from="$last" --set train.epochs=3 --set optim.lr=0.01 --set schedule.warmup_steps=0
    --set data.augment.lowres_prob=1.0 --set data.augment.lowres_min_size=36 --set data.augment.lowres_max_size=36)
train resolution_hr112 runs/resolution_hr112_ft_head "${finetune[@]}" --set "train.freeze=[backbone]"
train resolution_hr112 runs/resolution_hr112_ft_output "${finetune[@]}" --set "train.freeze=[backbone]" \
    --set "train.unfreeze=[backbone.output]"
train resolution_hr112 runs/resolution_hr112_ft_all "${finetune[@]}"

for run in lr36 uplr112 hr112 mixed112 hr112_ft_head hr112_ft_output hr112_ft_all; do
    score "runs/resolution_$run" 5 6 7 8 9
done
python benchmarks/lfw_table.py runs/resolution_*/lfw_36 runs/resolution_*/lfw_hr
