#!/usr/bin/env bash
# On the GPU machine, from the repository root, with build_cuda.sh's OUT_DIR beside the scripts:
#   bash OUT_DIR/run_smolvlm.sh     (SHAPES="256m 2.2b", BATCHES=1,8,32, NEW_TOKENS=64 by default;
#                                    IMAGES=N answers N photos per batch size, default the batch
#                                    size and at least 8; PEER=0 skips transformers)
# For each shape: the peer writes random weights (once per machine), Vitrine's bench measures
# (and writes the prompt file), then transformers measures, both in bf16 on the GPU
# (benches/RESULTS.md).
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
. "$here/cuda_env.sh"
[ -x /tmp/smolvlm_generate ] || unpack smolvlm_generate
images=${IMAGES:+--images $IMAGES}
for shape in ${SHAPES:-256m 2.2b}; do
  b=/tmp/bench-$shape
  echo "=== $shape, batches ${BATCHES:-1,8,32}, ${NEW_TOKENS:-64} new tokens ${images}"
  if [ ! -f "$b/model/processor_config.json" ]; then
    timeout 240 python3 benches/peers/smolvlm_peers.py prepare "$b" --shape "$shape" --images 32 2>&1 | grep -v -i warn | tail -2
    cp "$here/$shape/processor_config.json" "$b/model/"
  fi
  timeout 200 /tmp/smolvlm_generate "$b" --device cuda --dtype bf16 --batch-sizes "${BATCHES:-1,8,32}" \
    --new-tokens "${NEW_TOKENS:-64}" $images 2>&1 | tail -10
  [ "${PEER:-1}" = 0 ] && continue
  timeout 200 python3 benches/peers/smolvlm_peers.py measure "$b" --device cuda --dtype bf16 \
    --batch-sizes "${BATCHES:-1,8,32}" --new-tokens "${NEW_TOKENS:-64}" $images 2>&1 | grep -v -i warn | tail -10
done
