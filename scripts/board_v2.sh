#!/usr/bin/env bash
# The v2 board's grid in the order its results are most useful (resumable: each phase computes only what its
# store lacks; re-run the script after an interruption).  Plan and cost: README "Results" and docs/PERFORMANCE.md.
#   scripts/board_v2.sh /path/to/UTKFace [STORE]
# 1. every built-in method at its defaults, both tasks (the default board), and
# 2. the seed systems with the face descriptor (issue 26): erm, clip-cluster, ssl-pipeline and their ablations,
#    seed by seed (1 then 2 interleaved for seed 0, 1, ... 4), so an interrupted grid holds both for its first seeds;
# 3. the search: trials 1-4 of every method on seed 0, then each selection rule's pick on seeds 1-4.
set -euo pipefail
root=${1:?usage: scripts/board_v2.sh /path/to/UTKFace [STORE]}
out=${2:-stores/utkface-v2}
run() { fairbench run --config utkface-board-v2 --data-root "$root" --out "$out" --progress plain "$@"; }
faces=erm,clip-cluster,clip-cluster:no-resampling,ssl-pipeline,ssl-pipeline:no-meta-weights,ssl-pipeline:no-curation
for seeds in 1 2 3 4 5; do  # seeds 0..seeds-1: the same run ids as the 5-seed plan
    run --hparam-trials 1 --seeds "$seeds"
    run --hparam-trials 1 --seeds "$seeds" --vlm face-descriptor --methods "$faces"
done
run
