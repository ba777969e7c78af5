#!/usr/bin/env bash
# Here, before a call to the GPU machine: fills the repository's ignored .gpu/ folder with what
# run_all.sh needs there, the CUDA binaries (build_cuda.sh) and CLIP's lists with their photos,
# and, when AGREEMENT_DIR is given, the demo SmolVLM and photos run_agreement.sh compares with:
#   bash benches/gpu/carry.sh CLIP_LISTS_DIR [AGREEMENT_DIR]
# CLIP_LISTS_DIR is a folder clip_peers.py prepared (texts.txt, and images.txt with the photos'
# paths on this machine); its photos are copied under .gpu/clip/photos/ and listed by their
# paths from the repository root, which is where run_all.sh runs. AGREEMENT_DIR is a folder
# demo_model.sh wrote (model/, images.txt); it goes to .gpu/agreement/ the same way. The binary
# run_all.sh does not use (smolvlm_finetune) is left out: what travels is capped at 64 MiB (the
# total is printed at the end). Then, with the device tool: run with carry [".gpu"] the command
#   export LOG_DIR=$OUT; timeout 575 bash .gpu/bin/run_all.sh .gpu/clip [.gpu/agreement]
set -euo pipefail
lists=$(realpath "${1:?usage: carry.sh CLIP_LISTS_DIR}")
repo=$(cd "$(dirname "$0")/../.." && pwd)
carry="$repo/.gpu"
exclude="$repo/.git/info/exclude"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
rm -rf "$carry" && mkdir -p "$carry"
bash "$repo/benches/gpu/build_cuda.sh" "$carry/bin"
rm -f "$carry/bin/smolvlm_finetune.xz"
# copy_photos LIST NAME: LIST's photos into .gpu/NAME/photos/, listed in .gpu/NAME/images.txt.
copy_photos() {
  mkdir -p "$carry/$2/photos"
  while IFS= read -r photo; do
    [ -n "$photo" ] || continue
    cp "$photo" "$carry/$2/photos/"
    echo ".gpu/$2/photos/$(basename "$photo")"
  done <"$1" >"$carry/$2/images.txt"
}
cp "$lists/texts.txt" "$carry/clip/"
copy_photos "$lists/images.txt" clip
if [ -n "${2:-}" ]; then
  agreement=$(realpath "$2")
  copy_photos "$agreement/images.txt" agreement
  cp -r "$agreement/model" "$carry/agreement/model"
fi
du -sh "$carry"
