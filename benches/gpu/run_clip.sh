#!/usr/bin/env bash
# On the GPU machine, from the repository root, with build_cuda.sh's OUT_DIR beside the scripts:
#   bash OUT_DIR/run_clip.sh LISTS_DIR     (BATCHES=32,256,1024, TEXTS=16384, IMAGES=2048 by default)
# LISTS_DIR holds texts.txt and images.txt, written on the CPU machine by clip_peers.py from a
# demo warehouse, with the photos' paths relative to the repository root (the photos travel
# with the working tree). The peer writes the random-weight ViT-B/32 there, then Vitrine's
# clip_embed bench and transformers each embed the texts and photos (repeated up to the counts)
# in bf16 on the GPU, one after the other (Vitrine also at the batches `auto` chooses), then the
# photos' preparation alone on every core (benches/RESULTS.md).
here=$(cd "$(dirname "$0")" && pwd)
lists=$(realpath "${1:?usage: run_clip.sh LISTS_DIR}")
export PYTHONUNBUFFERED=1
. "$here/cuda_env.sh"
unpack clip_embed
counts="--texts ${TEXTS:-16384} --images ${IMAGES:-2048} --repeat ${REPEAT:-1}"
# The peer writes the weights first (its first step), then measures.
timeout 300 python3 benches/peers/clip_peers.py "$lists" - --device cuda --dtype bf16 \
  --batch-sizes "${BATCHES:-32,256,1024}" $counts 2>&1 | grep -v -i warn | tail -8
timeout 300 /tmp/clip_embed "$lists" --device cuda --dtype bf16 --batch-sizes "${BATCHES:-32,256,1024},auto" \
  $counts 2>&1 | tail -9
# What bounds the photos a second: preparing them on every core (decoding, CLIP's processor),
# Vitrine's then Pillow's and transformers'.
unpack image_prep
timeout 60 /tmp/image_prep "$lists/images.txt" --images 512 --repeat 3 2>&1 | tail -6
timeout 120 python3 benches/peers/image_prep_peers.py "$lists/images.txt" --images 512 --repeat 3 2>&1 | grep -v -i warn | tail -6
