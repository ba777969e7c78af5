#!/usr/bin/env bash
# On the GPU machine, from the repository root, with build_cuda.sh's OUT_DIR beside the scripts:
#   bash OUT_DIR/run_smolvlm.sh            (SHAPES="256m 2.2b", BATCHES=1,8,32 by default)
# For each shape: the peer writes random weights, Vitrine's bench measures (and writes the prompt
# file), then transformers measures, both in bf16 on the GPU (benches/RESULTS.md).
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
. "$here/cuda_env.sh"
gunzip -c "$here/smolvlm_generate.gz" > /tmp/smolvlm_generate && chmod +x /tmp/smolvlm_generate
for shape in ${SHAPES:-256m 2.2b}; do
  b=/tmp/bench-$shape
  echo "=== $shape"
  timeout 240 python3 benches/peers/smolvlm_peers.py prepare "$b" --shape "$shape" --images 32 2>&1 | grep -v -i warn | tail -2
  cp "$here/$shape/processor_config.json" "$b/model/"
  timeout 200 /tmp/smolvlm_generate "$b" --device cuda --dtype bf16 --batch-sizes "${BATCHES:-1,8,32}" --new-tokens 64 2>&1 | tail -8
  timeout 200 python3 benches/peers/smolvlm_peers.py measure "$b" --device cuda --dtype bf16 \
    --batch-sizes "${BATCHES:-1,8,32}" --new-tokens 64 2>&1 | grep -v -i warn | tail -8
done
