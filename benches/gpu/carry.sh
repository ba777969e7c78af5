#!/usr/bin/env bash
# Here, before a call to the GPU machine: fills the repository's ignored .gpu/ folder with what
# run_all.sh needs there, the CUDA binaries (build_cuda.sh) and CLIP's lists with their photos:
#   bash benches/gpu/carry.sh CLIP_LISTS_DIR
# CLIP_LISTS_DIR is a folder clip_peers.py prepared (texts.txt, and images.txt with the photos'
# paths on this machine); its photos are copied under .gpu/clip/photos/ and listed by their
# paths from the repository root, which is where run_all.sh runs. The binary run_all.sh does
# not use (smolvlm_finetune) is left out: what travels is capped at 64 MiB. Then, with the
# device tool: run with carry [".gpu"] the command
#   export LOG_DIR=$OUT; timeout 575 bash .gpu/bin/run_all.sh .gpu/clip
set -euo pipefail
lists=$(realpath "${1:?usage: carry.sh CLIP_LISTS_DIR}")
repo=$(cd "$(dirname "$0")/../.." && pwd)
carry="$repo/.gpu"
exclude="$repo/.git/info/exclude"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
rm -rf "$carry" && mkdir -p "$carry/clip/photos"
bash "$repo/benches/gpu/build_cuda.sh" "$carry/bin"
rm -f "$carry/bin/smolvlm_finetune.xz"
cp "$lists/texts.txt" "$carry/clip/"
while IFS= read -r photo; do
  [ -n "$photo" ] || continue
  cp "$photo" "$carry/clip/photos/"
  echo ".gpu/clip/photos/$(basename "$photo")"
done <"$lists/images.txt" >"$carry/clip/images.txt"
du -sh "$carry"
