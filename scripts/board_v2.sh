#!/usr/bin/env bash
# The v2 board's grid in the order its results are most useful (resumable: each phase computes only what its
# store lacks; re-run the script after an interruption).  Plan and cost: README "Results" and docs/PERFORMANCE.md.
#   scripts/board_v2.sh /path/to/UTKFace [STORE]
#   FAIRBENCH_UNTIL=14:30 scripts/board_v2.sh ...   # a sitting: no run starts after 14:30 (`fairbench run --until`),
#                                                   # the running ones finish and are recorded
# 1. every built-in method at its defaults, both tasks, on seed 0;
# 2. the seed systems with the face descriptor (issue 26): erm, clip-cluster, ssl-pipeline and their ablations,
#    seed by seed 0 ... 4 (the smaller, self-contained comparison first: 60 runs);
# 3. the default board on seeds 1 ... 4, seed by seed;
# 4. the search, task by task: trials 1-4 of every method on seed 0, then each regime's pick on seeds 1-4 (val_acc,
#    val_wga and the test oracle: the config's final_selection); task 1's board is complete before task 2's search.
set -euo pipefail
root=${1:?usage: scripts/board_v2.sh /path/to/UTKFace [STORE]}
out=${2:-stores/utkface-v2}
if [[ ${FAIRBENCH_UNTIL:-} == +* ]]; then  # each phase is its own `fairbench run`: a duration would restart in each
  echo "FAIRBENCH_UNTIL=$FAIRBENCH_UNTIL: give a time (14:30, or 2026-12-06T14:30), not a duration" >&2; exit 2
fi
until=(${FAIRBENCH_UNTIL:+--until "$FAIRBENCH_UNTIL"})
run() { fairbench run --config utkface-board-v2 --data-root "$root" --out "$out" --progress plain "${until[@]}" "$@"; }
faces=erm,clip-cluster,clip-cluster:no-resampling,ssl-pipeline,ssl-pipeline:no-meta-weights,ssl-pipeline:no-curation
# --seeds N runs seeds 0..N-1 (the same run ids as the 5-seed plan), so each call adds one seed to the last
run --hparam-trials 1 --seeds 1
for seeds in 1 2 3 4 5; do run --hparam-trials 1 --seeds "$seeds" --vlm face-descriptor --methods "$faces"; done
for seeds in 2 3 4 5; do run --hparam-trials 1 --seeds "$seeds"; done
# --retry-failed: ssl-pipeline's trial 1 failed on code before its forward bound (docs/METHODS.md); every
# method's trials count only once all of them have finished
run --retry-failed --tasks utkface-cb:gender/race
run --retry-failed
