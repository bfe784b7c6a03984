#!/usr/bin/env bash
# FaceLeaks on LFW (docs/analysis/README.md, "Transfer leakage"; docs/benchmarks.md): a 32 px IR-SE-8
# trained on the people of LFW people folds 0-3 (A), fine-tuned on folds 4-6 (B) three ways (every
# weight; output layer + new head; new head only), a control trained on B alone; membership of A
# against folds 7-8 (N, never trained on) from embeddings and from pair scores only.
# One CPU thread, about 25 min on a quiet core (longer on a shared machine); rerunning it takes
# the finished runs from runs/transfer_leakage.
#   scripts/transfer_leakage_study.sh [LFW_ROOT]        DEVICE=cuda ... as needed
set -euo pipefail
cd "$(dirname "$0")/.."
LFW=${1:-${LFW:-../shared/data/lfw}}
DEVICE=${DEVICE:-cpu}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# MTCNN-aligned 112x112 crops of every LFW image, made once
[ -d data/lfw_mtcnn112 ] ||
    facerec align "$LFW/images" data/lfw_mtcnn112 --detector mtcnn --several central --missing center
facerec analyze transfer-leakage --lfw "$LFW" --aligned data/lfw_mtcnn112 \
    --members-folds 0 1 2 3 --finetune-folds 4 5 6 --non-member-folds 7 8 \
    --work runs/transfer_leakage --out docs/analysis/transfer_leakage --device "$DEVICE"
