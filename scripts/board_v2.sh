#!/usr/bin/env bash
# The v2 board's grid in the order its results are most useful (resumable: each phase computes only what its
# store lacks; re-run the script after an interruption).  Plan and cost: README "Results" and docs/PERFORMANCE.md.
#   scripts/board_v2.sh /path/to/UTKFace [STORE]
# 1. every built-in method at its defaults, both tasks, seeds 0-4 (the default board; seed by seed);
# 2. the seed systems with the face descriptor (issue 26): erm, clip-cluster, ssl-pipeline and their ablations;
# 3. the search: trials 1-4 of every method on seed 0, then each selection rule's pick on seeds 1-4.
set -euo pipefail
root=${1:?usage: scripts/board_v2.sh /path/to/UTKFace [STORE]}
out=${2:-stores/utkface-v2}
run() { fairbench run --config utkface-board-v2 --data-root "$root" --out "$out" --progress plain "$@"; }
run --hparam-trials 1
run --hparam-trials 1 --vlm face-descriptor \
    --methods erm,clip-cluster,clip-cluster:no-resampling,ssl-pipeline,ssl-pipeline:no-meta-weights,ssl-pipeline:no-curation
run
