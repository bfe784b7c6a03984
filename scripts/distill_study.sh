#!/usr/bin/env bash
# Distillation against training from scratch (docs/benchmarks.md): the 36 px network of the
# resolution study on the people of LFW View 2 people folds 0-4, same data and budget,
# (a) ArcFace alone, (b) distilled from the dlib reference model alone, (c) both, (d) (b) with
# 2,000 teacher-labelled morphs of the same people among the images (same number of steps);
# scored on the pairs of folds 5-9.
#   scripts/distill_study.sh [LFW_ROOT]       THREADS=1 DEVICE=cuda ... as needed
set -euo pipefail
cd "$(dirname "$0")/.."
LFW=${1:-${LFW:-../shared/data/lfw}}
source scripts/common.sh
prepare_lfw
prepare_teacher

train resolution_lr36 runs/resolution_lr36
train distill_lowres36_lfw runs/distill_lowres36_only --set head.name=none --set "head.options={}"
train distill_lowres36_lfw runs/distill_lowres36_arcface
[ -d data/morphs_0-4 ] || facerec morphs data/lfw_people_0-4 data/morphs_0-4 --count 2000
[ -f data/dlib_morphs_0-4.npz ] ||
    facerec distill-targets data/morphs_0-4 --teacher dlib --out data/dlib_morphs_0-4.npz
train distill_lowres36_lfw runs/distill_lowres36_morphs --set head.name=none --set "head.options={}" \
    --set "data.extra_roots=[data/morphs_0-4]" --set "distill.targets=[data/dlib_lfw_0-8.npz, data/dlib_morphs_0-4.npz]" \
    --set train.max_steps=384
for run in resolution_lr36 distill_lowres36_only distill_lowres36_arcface distill_lowres36_morphs; do
    score "runs/$run" 5 6 7 8 9
done
python benchmarks/lfw_table.py runs/resolution_lr36/lfw_hr runs/distill_lowres36_*/lfw_hr
