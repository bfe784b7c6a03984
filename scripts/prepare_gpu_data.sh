#!/usr/bin/env bash
# The training set of configs/default_model_gpu.yaml as compact 64 px trees under data/gpu
# (about 45 MB: small enough to travel to a GPU machine with the repository; SIZE=112
# for configs/default_model_gpu_v2.yaml's data/gpu112, see the end), from the aligned
# sets of issue 19 (docs/benchmarks.md: "Issue 19: near-duplicates", "Issue 19: pose"):
#   data/lfw_mtcnn112, data/celeba_mtcnn112, data/utkface_mtcnn112  (facerec align, MTCNN, 112 px)
#   data/clean/{lfw_people_0-8,celeba,utkface}  (facerec data near-duplicates --write-clean)
# Each step is skipped when its output exists. On 2 CPU cores the teacher takes about an hour
# (dlib at ~9 images/s a core on the aligned crops).
#   scripts/prepare_gpu_data.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
for input in data/clean/lfw_people_0-8 data/clean/celeba data/clean/utkface data/lfw_people_0-8 \
    data/lfw_people_0-8_t data/dlib_lfw_0-8_t.npz data/celeba_tree data/celeba_mtcnn112 data/sources/identity_CelebA.txt; do
    [ -e "$input" ] || { echo "missing input: $input (see the header and docs/benchmarks.md)" >&2; exit 2; }
done
teacher() {  # tree, out: the dlib reference's embedding of each aligned crop, no mirror pass
    [ -f "$2" ] || facerec distill-targets "$1" --out "$2" --detector none --no-mirror --device cpu
}
links() {  # src dst names...: dst/<name> copies of src/<name> (identity folders of links)
    local src=$1 dst=$2
    shift 2
    mkdir -p "$dst"
    for name in "$@"; do [ -e "$dst/$name" ] || cp -a "$src/$name" "$dst/$name"; done
}

# CelebA: identities whose number is divisible by 3 (99 of 299) are held out for evaluation
# (the cross-pose set below); the other 200 train, less two identities found to be the same
# person as held-out ones (identical photos under other numbers: 7312 = 7314/7317/7320,
# 7393 = 7392; `facerec data near-duplicates data/celeba_train data/celeba_heldout`).
ls data/clean/celeba | awk '/^[0-9]+$/ && $1 % 3 == 0' >data/celeba_heldout_people.txt
links data/clean/celeba data/celeba_heldout $(cat data/celeba_heldout_people.txt)
links data/clean/celeba data/celeba_train $(ls data/clean/celeba | awk '/^[0-9]+$/ && $1 % 3 != 0 && $1 != 7312 && $1 != 7393')
facerec data cross-pose-pairs data/celeba_mtcnn112 --out runs/pose/celeba_heldout_cross_pose.csv \
    --labels data/sources/identity_CelebA.txt --people data/celeba_heldout_people.txt \
    --min-yaw-diff 25 --per-person 10 --tolerance 2.5 --seed 0

# UTKFace: every 8th face in name order (2,954) is held out for the bias table; 20,671 train.
# Each face is its own identity (UTKFace has no identity labels).
mkdir -p data/utk_train data/utk_bias
ls data/clean/utkface | sort | awk 'NR % 8 != 1' | while read -r f; do
    [ -e "data/utk_train/$f" ] || ln -s "$(readlink -f "data/clean/utkface/$f")" "data/utk_train/$f"
done
ls data/clean/utkface | sort | awk 'NR % 8 == 1' | while read -r f; do
    d="data/utk_bias/${f%%.*}"
    mkdir -p "$d"
    [ -e "$d/$f" ] || ln -s "$(readlink -f "data/clean/utkface/$f")" "$d/$f"
done

# Folders of the images the teacher embeds: the LFW fold 0-8 images without a cached embedding,
# and UTKFace as one-image identity folders in two halves (two teacher processes side by side).
find_images() { (cd "$1" && find -L . -type f | sort); }
comm -23 <(find_images data/lfw_people_0-8) <(find_images data/lfw_people_0-8_t) | while read -r f; do
    mkdir -p "data/lfw_people_0-8_rest/$(dirname "$f")"
    [ -e "data/lfw_people_0-8_rest/$f" ] || ln -s "$(readlink -f "data/lfw_people_0-8/$f")" "data/lfw_people_0-8_rest/$f"
done
ls data/utk_train | sort | awk '{print (NR % 2 ? "a" : "b"), $0}' | while read -r half f; do
    d="data/utk_shard_$half/${f%%.*}"
    mkdir -p "$d"
    [ -e "$d/$f" ] || ln -s "$(readlink -f "data/utk_train/$f")" "$d/$f"
done

# The teacher's embeddings. LFW: 6,916 images already embedded from the original photographs
# (data/dlib_lfw_0-8_t.npz, `facerec distill-targets ... --source-root`); the other 4,534 from
# their aligned crops. CelebA and UTKFace from their aligned crops (UTKFace as one-image
# identity folders, in two halves that can run side by side).
teacher data/lfw_people_0-8_rest data/dlib_lfw_rest_crops.npz
teacher data/celeba_tree data/dlib_celeba_crops.npz
teacher data/utk_shard_a data/dlib_utk_a_crops.npz
teacher data/utk_shard_b data/dlib_utk_b_crops.npz

# The compact copies, each with its targets.npz: 64 px under data/gpu (the run behind the shipped
# fast model; UTKFace at quality 85), or SIZE px under data/gpuSIZE at QUALITY for all three
# (SIZE=112 QUALITY=70: ~50 MiB packed, for 64 px and 112 px students alike).
# A copy counts as made once its targets.npz is written (compact refuses a non-empty folder:
# remove a half-written one by hand).
SIZE=${SIZE:-64}
if [ "$SIZE" = 64 ]; then
    dst=gpu; quality=${QUALITY:-90}; utk_quality=${QUALITY:-85}
else
    dst=gpu$SIZE; quality=${QUALITY:-70}; utk_quality=$quality
fi
compact() {  # src, dst, quality, compact options...
    local src=$1 out=data/$dst/$2 q=$3
    shift 3
    [ -f "$out/targets.npz" ] || facerec compact "$src" "$out" --size "$SIZE" --quality "$q" "$@"
}
# Each copy also carries its images' poses (pose.tsv, landmarks in the copy's pixels) for the
# 3-D pose augmentation (data.augment.pose3d); copies made before --poses existed lack it:
# remove data/$dst to remake them.
[ -f data/utkface_mtcnn112/pose.tsv ] || facerec data pose data/utkface_mtcnn112
compact data/clean/lfw_people_0-8 lfw_people_0-8 "$quality" --targets data/dlib_lfw_0-8_t.npz data/dlib_lfw_rest_crops.npz \
    --poses data/lfw_mtcnn112/pose.tsv
compact data/celeba_train celeba "$quality" --targets data/dlib_celeba_crops.npz --poses data/celeba_mtcnn112/pose.tsv
compact data/utk_train utkface "$utk_quality" --one-identity-per-image \
    --targets data/dlib_utk_a_crops.npz data/dlib_utk_b_crops.npz --poses data/utkface_mtcnn112/pose.tsv
# what travels with the repository to a GPU machine: one archive (36,000 small files and 26,000
# folders would count as far more than their megabytes)
# (its own folder, so that a run carries one archive: data/gpu_pack, data/gpu112_pack)
mkdir -p "data/${dst}_pack"
tar -czf "data/${dst}_pack/$dst.tar.gz" -C data "$dst"
ls -l "data/${dst}_pack/$dst.tar.gz"
