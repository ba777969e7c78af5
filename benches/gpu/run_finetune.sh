#!/usr/bin/env bash
# On the GPU machine, from the repository root, with build_cuda.sh's OUT_DIR beside the scripts:
#   bash OUT_DIR/run_finetune.sh            (MODES="full lora", BATCHES="4 8", STEPS=10 by default)
# SmolVLM-256M-shape fine-tuning in f32: the peer writes random weights and 32 photos, then for
# each mode and batch size Vitrine's bench and transformers (+ PEFT for LoRA) train one after
# the other on the same pairs, each in its own process while nvidia-smi samples the GPU's memory
# (the peak over the run, less what was in use before it, is printed after each row).
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
. "$here/cuda_env.sh"
unpack smolvlm_finetune
b=/tmp/finetune-256m
timeout 240 python3 benches/peers/smolvlm_peers.py prepare "$b" --shape 256m --images 32 2>&1 | grep -v -i warn | tail -2
cp "$here/256m/processor_config.json" "$b/model/"

# peak GPU memory in MiB used while "$@" runs, less the memory in use before it started
with_memory() {
  local before log
  before=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  log=$(mktemp)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$log" &
  local sampler=$!
  "$@"
  local status=$?
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  echo "peak GPU memory: $(( $(sort -n "$log" | tail -1) - before )) MiB (status $status)"
  rm -f "$log"
}

for mode in ${MODES:-full lora}; do
  for batch in ${BATCHES:-4 8}; do
    echo "=== $mode, batch $batch"
    with_memory timeout 150 /tmp/smolvlm_finetune "$b" --device cuda --mode "$mode" \
      --batch-size "$batch" --steps "${STEPS:-10}" 2>&1 | tail -5
    with_memory timeout 150 python3 benches/peers/smolvlm_peers.py finetune "$b" --device cuda \
      --mode "$mode" --batch-size "$batch" --steps "${STEPS:-10}" 2>&1 | grep -v -i warn | tail -5
  done
done
