#!/usr/bin/env bash
# Reproduce facerec's default model from the LFW images: align every face, link the people
# of View 2 people folds 0-8, embed their 250x250 LFW images with the dlib reference model
# (the teacher), train the student in two stages (configs default_model, then
# default_model_stage2 from its weights), score it on fold 9's pairs, and (INSTALL=1) install it.
#
#   scripts/train_default_model.sh [LFW_ROOT]        # default ../shared/data/lfw
#   DEVICE=cuda scripts/train_default_model.sh       # the training on a GPU
#
# On 2 CPU cores: alignment ~7 min, teacher embeddings ~25 min, training ~1.5 + ~1.5 hours.
set -euo pipefail
cd "$(dirname "$0")/.."
LFW=${1:-${LFW:-../shared/data/lfw}}
RUN=${RUN:-runs/default_model}
FINAL=${FINAL:-runs/default_model_stage2}
source scripts/common.sh
prepare_lfw
prepare_teacher
train default_model "$RUN"
train default_model_stage2 "$FINAL" --set train.init_from="$RUN/model.pt"
facerec eval lfw --root "$LFW" --folds 9 --model "$FINAL/model.pt" --out "$FINAL/lfw_fold9"
if [ "${INSTALL:-0}" = 1 ]; then
    cp "$FINAL/model.pt" src/facerec/models/weights/default.pt
    echo "installed $FINAL/model.pt as the default model"
fi
