#!/usr/bin/env bash
# One GPU session for issue 19 and the GPU tables (docs/benchmarks.md):
#  1. the students of STUDENTS_FILE (default scripts/gpu_students.txt, the recorded run) trained
#     side by side for a wall-clock budget: a short probe of each measures its images/s, then each
#     trains for the steps that fit the budget (a cosine schedule needs its length up front);
#  2. the training-throughput table (iResNet-50 and MobileFaceNet at 112 px, bf16);
#  3. Partial FC at 1M and 10M classes, sampled (rate 0.1) against dense (rate 1.0).
# Needs the compact training trees (data/gpu, made by scripts/prepare_gpu_data.sh, which also packs
# them into data/gpu_pack/gpu.tar.gz to travel) and runs from the repository root with the
# package importable. The run behind docs/benchmarks.md, on the GPU machine:
#   tar -xzf data/gpu_pack/gpu.tar.gz -C data
#   PYTHONPATH=$PWD/src WORK=/tmp/work OUT=/tmp/back BUDGET=300 DEADLINE=520 scripts/gpu_default_model.sh
# and right after it the second stage of the two best students (the shipped fast model is
# s2_warm_w10), each with: python -m facerec.cli train default_model_gpu --output-dir /tmp/work/s2_NAME
#   --set train.init_from=/tmp/work/NAME/model.pt --set optim.lr=0.05 --set schedule.warmup_steps=100
#   --set train.max_steps=1700 --set data.num_workers=7 [--set backbone.options.width_mult=1.5]
# The next run (scripts/gpu_students_v2.txt: students of configs/default_model_gpu_v2.yaml, which
# read the 112 px copies into memory and augment on the GPU; made and packed by
# `SIZE=112 scripts/prepare_gpu_data.sh`), carrying data/gpu112_pack:
#   tar -xzf data/gpu112_pack/gpu112.tar.gz -C data
#   PYTHONPATH=$PWD/src WORK=/tmp/work OUT=/tmp/back STUDENTS_FILE=scripts/gpu_students_v2.txt \
#     BUDGET=400 DEADLINE=540 SKIP_TABLES=1 scripts/gpu_default_model.sh
# (the probe and each run's start, which preloads the images, take about a minute besides)
# Since the repository holds resnet128's weights (11 MB; the tracked files are 22.6 MB), the 50 MB
# pack no longer fits one 64 MiB carry beside it: split it (`split -b 30M gpu112.tar.gz part_`),
# carry data/gpu112_pack/part_aa in a first call that only copies it aside, then the rest in
# the call that runs (ignored files stay on the machine between calls), and `cat part_* | tar -xz`.
# WORK holds the runs; OUT receives each student's model file and one results.tar.gz (logs,
# metrics, reports) and nothing else.
# On a CPU, for a dry run of the same steps: DEVICE=cpu BUDGET=20 PROBE=4 MIN_STEPS=3 SKIP_TABLES=1
#   EXTRA_SETS="data.batch_size=16 data.num_workers=1" ... (EXTRA_SETS: overrides for every student)
set -uo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-runs/gpu}
OUT=${OUT:-$WORK/back}
BUDGET=${BUDGET:-300}   # seconds of training per student, all side by side
PROBE=${PROBE:-150}     # steps of the throughput probe
DEVICE=${DEVICE:-cuda}
BATCH=256
DEADLINE=${DEADLINE:-540}  # seconds after the start by which everything has ended (the tables shrink to fit)
T0=$(date +%s)
mkdir -p "$WORK" "$OUT"
export PYTHONUNBUFFERED=1

# the students: one line each, "name config override..." (# starts a comment); overrides, like
# EXTRA_SETS, are separated by spaces and hold none themselves
STUDENTS_FILE=${STUDENTS_FILE:-scripts/gpu_students.txt}
shopt -u patsub_replacement 2>/dev/null || true  # bash 5.2: an & in WARM_FROM stays an &
declare -A STUDENTS=() CONFIGS=()
while read -r name config overrides; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    [ -n "$config" ] || { echo "$STUDENTS_FILE: student $name has no config" >&2; exit 2; }
    CONFIGS[$name]=$config
    STUDENTS[$name]="${overrides//\$\{WARM_FROM\}/${WARM_FROM:-fast}}"
done <"$STUDENTS_FILE"
[ ${#STUDENTS[@]} -gt 0 ] || { echo "no students in $STUDENTS_FILE" >&2; exit 2; }

train() {  # name, steps, output folder, overrides...
    local name=$1 steps=$2 dir=$3
    shift 3
    local sets=(--set "train.max_steps=$steps" --set "train.device=$DEVICE" --set train.progress=false --set train.threads=2)
    for kv in "$@" ${EXTRA_SETS:-}; do sets+=(--set "$kv"); done
    python -m facerec.cli train "${CONFIGS[$name]}" --output-dir "$dir" "${sets[@]}" >"$dir.log" 2>&1
}

rate_of() {  # images/s of a finished run's last logged step
    python -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if 'images_per_s' in l][-1]['images_per_s'])" "$1/metrics.jsonl"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$WORK/gpu.txt" 2>&1 || true
echo "== probe: $PROBE steps each, side by side"
for name in "${!STUDENTS[@]}"; do
    # shellcheck disable=SC2086
    train "$name" "$PROBE" "$WORK/probe_$name" ${STUDENTS[$name]} &
done
wait
echo "== training for ${BUDGET}s"
start=$(date +%s)
for name in "${!STUDENTS[@]}"; do
    rate=$(rate_of "$WORK/probe_$name") || { echo "probe of $name failed:"; tail -5 "$WORK/probe_$name.log"; continue; }
    steps=$(python -c "print(max(${MIN_STEPS:-50}, int($rate * $BUDGET / $BATCH)))")
    echo "$name: probe $rate images/s -> $steps steps"
    # shellcheck disable=SC2086
    train "$name" "$steps" "$WORK/$name" ${STUDENTS[$name]} &
done
wait
echo "== trained in $(($(date +%s) - start)) s"
for name in "${!STUDENTS[@]}"; do
    tail -3 "$WORK/$name.log"
    cp "$WORK/$name/model.pt" "$OUT/model_$name.pt" 2>/dev/null || echo "$name: no model"
done

left() { echo $((DEADLINE - ($(date +%s) - T0))); }  # seconds left before the deadline
if [ "${SKIP_TABLES:-0}" != 1 ]; then
    echo "== training throughput"
    limit=$(left)
    [ "$limit" -lt 10 ] && limit=10  # timeout 0 would mean no limit
    timeout "$limit" python benchmarks/train_throughput.py --device cuda --precision bf16 --batch 256 --steps 30 \
        --warmup 10 --channels-last --peak-tflops 790 --models iresnet50 mobilefacenet --json "$WORK/throughput.json"
    echo "== Partial FC, sampled against dense"
    for spec in "1000000 fp32 45" "10000000 bf16 90"; do
        set -- $spec
        for rate in 0.1 1.0; do
            limit=$(left)
            [ "$limit" -gt "$3" ] && limit=$3
            [ "$limit" -lt 10 ] && { echo "no time left for $1 classes at rate $rate"; continue; }
            timeout "$limit" python benchmarks/partial_fc_scale.py --classes "$1" --rate "$rate" --dtype "$2" \
                --device cuda --batch 512 --steps 10 --out "$WORK/pfc_${1}_${rate}" 2>&1 | grep -v "it/s" | tail -12
        done
    done
fi
tar -czf "$OUT/results.tar.gz" --exclude checkpoints --exclude "*.pt" -C "$WORK" --exclude back . 2>/dev/null
ls -la "$OUT"
