#!/usr/bin/env bash
# Every benchmark of issue 19 for each model named, into runs/issue19/eval/NAME/ (one folder per
# set with its report.json); benchmarks/student_table.py turns the folders into the tables of
# docs/benchmarks.md ("Issue 19: students trained on a GPU").
#   scripts/eval_students.sh NAME=MODEL ...      e.g. fast=fast dlib=dlib new=runs/gpu/model_warm_w10.pt
# Sets: LFW View 2 fold 9 (MTCNN on the originals, yaw breakdown), the LFW fold-9 and held-out
# CelebA cross-pose pair sets, CACD-VS (ten folds), FG-NET (leave one out) and the bias tables
# (LFW fold-9 people by gender; the held-out UTKFace faces by gender and by race); everything but
# LFW on the MTCNN-aligned copies (--detector none). SETS="lfw9 cacd" limits the sets.
set -euo pipefail
cd "$(dirname "$0")/.."
LFW=${LFW:-../shared/data/lfw}
SETS=${SETS:-lfw9 lfw9_xpose celeba_xpose cacd fgnet bias_gender utk_gender utk_race}
run() {  # set name, model, folder
    local set=$1 model=$2 out=$3/$1
    [ -f "$out/report.json" ] && { echo "$out: measured before, kept"; return 0; }
    case $set in
        lfw9) facerec eval lfw --root "$LFW" --folds 9 --model "$model" --pose data/lfw_mtcnn112/pose.tsv --out "$out" ;;
        lfw9_xpose) facerec eval pairs runs/pose/lfw9_cross_pose.csv --model "$model" --detector none \
            --pose data/lfw_mtcnn112/pose.tsv --out "$out" ;;
        celeba_xpose) facerec eval pairs runs/pose/celeba_heldout_cross_pose.csv --model "$model" --detector none \
            --pose data/celeba_mtcnn112/pose.tsv --out "$out" ;;
        cacd) facerec eval cacd-vs data/cacd_vs_mtcnn112 --detector none --model "$model" --out "$out" ;;
        fgnet) facerec eval fgnet data/fgnet_mtcnn112 --detector none --model "$model" --out "$out" ;;
        bias_gender) facerec analyze bias --images runs/lfw_fold9_mtcnn112 --detector none --groups runs/lfw_gender.csv \
            --model "$model" --out "$out" ;;
        utk_gender) facerec analyze bias --images data/utk_bias --detector none \
            --groups runs/issue19/utkface_labels/gender.csv --model "$model" --out "$out" ;;
        utk_race) facerec analyze bias --images data/utk_bias --detector none \
            --groups runs/issue19/utkface_labels/race.csv --model "$model" --out "$out" ;;
        *) echo "unknown set $set" >&2; return 1 ;;
    esac
}
for spec in "$@"; do
    name=${spec%%=*} model=${spec#*=}
    for set in $SETS; do
        echo "== $name: $set"
        run "$set" "$model" "runs/issue19/eval/$name" 2>&1 | { grep -v "img/s\|it/s" || true; } | tail -3 \
            || echo "$name: $set failed"
    done
done
