# Shared set-up of the LFW studies: aligned crops, identity-disjoint training trees, an LFW root
# over the aligned crops (scored with --detector none), and the dlib teacher's embeddings.
# Sourced by the scripts beside it; LFW is the LFW root (images/ and meta/).
LFW=${LFW:-../shared/data/lfw}
THREADS=${THREADS:-0}          # torch CPU threads per run (0: torch's default)
DEVICE=${DEVICE:-auto}

prepare_lfw() {
    facerec align "$LFW/images" data/lfw112 --missing center        # resumes: done crops are kept
    [ -d data/lfw_people_0-8 ] ||
        facerec lfw-people data/lfw112 data/lfw_people_0-8 --lfw "$LFW" --folds 0 1 2 3 4 5 6 7 8
    [ -d data/lfw_people_0-4 ] ||
        facerec lfw-people data/lfw112 data/lfw_people_0-4 --lfw "$LFW" --folds 0 1 2 3 4 --min-images 2
    mkdir -p data/lfw112root
    ln -sfn ../lfw112 data/lfw112root/images
    ln -sfn "$(realpath "$LFW/meta")" data/lfw112root/meta
}

prepare_teacher() {
    [ -f data/dlib_lfw_0-8.npz ] ||
        facerec distill-targets data/lfw_people_0-8 --teacher dlib --source-root "$LFW/images" --out data/dlib_lfw_0-8.npz
}

train() {  # train CONFIG RUN_DIR [--set ...]
    local config=$1 run=$2
    shift 2
    [ -f "$run/model.pt" ] ||
        facerec train "$config" --output-dir "$run" --set train.threads="$THREADS" --set train.device="$DEVICE" "$@"
}

score() {  # score RUN_DIR FOLDS... : LFW pairs of those folds, faces as they are and at 36 px
    local run=$1
    shift
    [ -f "$run/lfw_hr/report.json" ] ||
        facerec eval lfw --root data/lfw112root --detector none --folds "$@" --model "$run/model.pt" --out "$run/lfw_hr"
    [ -f "$run/lfw_36/report.json" ] ||
        facerec eval lfw --root data/lfw112root --detector none --folds "$@" --model "$run/model.pt" \
            --out "$run/lfw_36" --degrade 36
}
