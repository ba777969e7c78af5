#!/usr/bin/env bash
# On the GPU machine, from the repository root, with build_cuda.sh's OUT_DIR beside the scripts:
#   bash OUT_DIR/run_agreement.sh DIR     (IMAGES=N photos, default all of DIR/images.txt)
# DIR holds model/ (a SmolVLM folder: the demo's own model, trained on the CPU machine by
# benches/gpu/demo_model.sh) and images.txt (demo photos, paths relative to the repository
# root). Every photo is answered greedily by the model in f32 on the CPU and in bf16 on the GPU;
# prints how many answers and extractions agree (issue 19: at least 95 %; benches/RESULTS.md).
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: run_agreement.sh DIR}
. "$here/cuda_env.sh"
unpack smolvlm_agreement
timeout 300 /tmp/smolvlm_agreement "$dir/model" "$dir/images.txt" --device cuda --dtype bf16 \
  ${IMAGES:+--images $IMAGES} 2>&1 | tail -12
