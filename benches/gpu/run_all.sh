#!/usr/bin/env bash
# On the GPU machine, from the repository root: every GPU measurement of benches/RESULTS.md's
# issue-19 section in one call (5 minutes on an H200), each part's output also written to
# LOG_DIR (default /tmp/gpu-logs):
#   bash OUT_DIR/run_all.sh [CLIP_LISTS_DIR [AGREEMENT_DIR]]
# (benches/gpu/carry.sh prepares OUT_DIR, CLIP's lists and the agreement's model and photos as
# .gpu/bin, .gpu/clip and .gpu/agreement here.)
# 1. The crate's own kernels and the whole-model fidelity tests on the GPU in f32 (fidelity.sh),
#    first: a kernel that computes wrongly shows before any time goes to benchmarks.
# 2. SmolVLM-256M shape, bf16, 64 new tokens: Vitrine then transformers at batch 1, 8, 32 (8 or
#    32 photos) and at 64, 128, 256 (256 photos).
# 3. CLIP ViT-B/32 (run_clip.sh), when CLIP_LISTS_DIR is given, with the photos' preparation
#    alone on every core.
# 4. When AGREEMENT_DIR is given (run_agreement.sh): the demo SmolVLM's greedy answers in bf16
#    on the GPU against f32 on the CPU, photo by photo.
# 5. Vitrine alone at batch 256 and at the batch `auto` chooses over 1,024 photos (the steady
#    state, later batches' photos prepared while the GPU works) and at 1 new token (the vision
#    tower and prefill alone).
# On an H200 at 501286e the whole ran in 299 s, with 23 CLIP texts and 32 photos from a demo
# catalog copied into the carried folder (benches/RESULTS.md).
# SHAPES=2.2b adds nothing here: run_smolvlm.sh measures that shape on its own.
here=$(cd "$(dirname "$0")" && pwd)
logs=${LOG_DIR:-/tmp/gpu-logs}
mkdir -p "$logs"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader
part() { # part NAME COMMAND...: runs COMMAND, its output shown and kept in $logs/NAME.log
  local name=$1; shift
  echo "##### $name ($(date +%T))"
  "$@" 2>&1 | tee "$logs/$name.log"
}
export SHAPES=256m
part fidelity bash "$here/fidelity.sh"
part smolvlm-small env BATCHES=1,8,32 bash "$here/run_smolvlm.sh"
part smolvlm-large env BATCHES=64,128,256 IMAGES=256 bash "$here/run_smolvlm.sh"
[ -n "${1:-}" ] && part clip bash "$here/run_clip.sh" "$1"
[ -n "${2:-}" ] && part agreement bash "$here/run_agreement.sh" "$2"
part smolvlm-steady env BATCHES=256,auto IMAGES=1024 PEER=0 bash "$here/run_smolvlm.sh"
part smolvlm-prefill env BATCHES=32,256 IMAGES=256 NEW_TOKENS=1 PEER=0 bash "$here/run_smolvlm.sh"
echo "##### done ($(date +%T))"
