#!/usr/bin/env bash
# Reproduce facerec's default model from the LFW images: align every face, link the people
# of View 2 people folds 0-8, embed their 250x250 LFW images with the dlib reference model
# (the teacher), train the student, score it on fold 9's pairs, and (INSTALL=1) install it.
#
#   scripts/train_default_model.sh [LFW_ROOT]        # default ../shared/data/lfw
#   DEVICE=cuda scripts/train_default_model.sh       # the training on a GPU
#
# On 2 CPU cores: alignment ~7 min, teacher embeddings ~30 min, training ~80 min.
set -euo pipefail
cd "$(dirname "$0")/.."
LFW=${1:-../shared/data/lfw}
DEVICE=${DEVICE:-auto}
RUN=${RUN:-runs/default_model}

facerec align "$LFW/images" data/lfw112 --missing center        # resumes: done crops are kept
[ -d data/lfw_people_0-8 ] ||
    facerec lfw-people data/lfw112 data/lfw_people_0-8 --lfw "$LFW" --folds 0 1 2 3 4 5 6 7 8
[ -f data/dlib_lfw_0-8.npz ] ||
    facerec distill-targets data/lfw_people_0-8 --teacher dlib --source-root "$LFW/images" --out data/dlib_lfw_0-8.npz
facerec train default_model --set train.device="$DEVICE" --set train.output_dir="$RUN"
facerec eval lfw --root "$LFW" --folds 9 --model "$RUN/model.pt" --out "$RUN/lfw_fold9"
if [ "${INSTALL:-0}" = 1 ]; then
    cp "$RUN/model.pt" src/facerec/models/weights/default.pt
    echo "installed $RUN/model.pt as the default model"
fi
