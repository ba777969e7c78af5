#!/usr/bin/env bash
# On the GPU machine, from the repository root: the crate's own kernels against candle's composed
# operations (device_kernels), then the whole-model fidelity tests in f32 on the GPU against the
# committed fixtures.   bash OUT_DIR/fidelity.sh
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cuda_env.sh"
unpack device_kernels && unpack smolvlm_fidelity && unpack clip_fidelity
# The test binaries look for the fixtures in the checkout they were built in.
built=$(strings /tmp/smolvlm_fidelity | grep -oE -m1 '/[^ ]*/udfs\.\./tests/fixtures' | sed 's#/udfs\.\./tests/fixtures##')
[ -n "$built" ] && [ ! -e "$built" ] && mkdir -p "$(dirname "$built")" && ln -s "$PWD" "$built"
for t in device_kernels smolvlm_fidelity clip_fidelity; do
  echo "=== $t on cuda"
  VITRINE_TEST_DEVICE=cuda timeout 240 /tmp/$t --test-threads 1 --nocapture 2>&1 | grep -v '^$' | tail -40
done
