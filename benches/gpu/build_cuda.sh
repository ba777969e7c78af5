#!/usr/bin/env bash
# Builds the CUDA (sm_90) SmolVLM and CLIP benches and fidelity tests on a machine without CUDA, for a GPU
# machine that has the driver and PyTorch's CUDA 13 libraries but no Rust toolchain (and the
# photo-preparation bench, which bounds CLIP's photos a second there, and the bf16-against-f32
# agreement of SmolVLM's answers):
#   bash benches/gpu/build_cuda.sh OUT_DIR
# Gets nvcc 13.0 and its headers from NVIDIA's pip wheels and links against stand-in CUDA
# libraries (each exports the functions cudarc declares; the real ones are loaded on the GPU
# machine), then writes OUT_DIR/{smolvlm_generate,smolvlm_finetune,smolvlm_agreement,clip_embed,image_prep,smolvlm_fidelity,
# clip_fidelity,device_kernels}.xz
# (xz halves gzip's size, which matters: what travels to the GPU machine is capped at 64 MiB),
# the processor configs the peer must use there, and the scripts that run them.
set -euo pipefail
out=$(realpath -m "${1:?usage: build_cuda.sh OUT_DIR}")
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${CUDA_WORK:-$HOME/.cache/vitrine-cuda-toolkit}
mkdir -p "$work/wheels" "$out"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  -d "$work/wheels" "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*" \
  "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*"
for w in "$work"/wheels/*.whl; do unzip -q -o "$w" -d "$work/x"; done
cuda="$work/x/nvidia/cu13"
chmod +x "$cuda"/bin/* "$cuda"/nvvm/bin/*
# cudarc comes only with the cuda feature: a machine that has built without it lacks its sources.
(cd "$repo" && cargo fetch --locked)
cudarc=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.* | tail -1)
stub() { # stub NAME SONAME PREFIX SOURCE: a library exporting every PREFIX* function cudarc declares
  grep -hoE "(fn |link_name = \")$3[A-Za-z0-9_]*" "$4" | sed -E 's/^(fn |link_name = ")//' | sort -u \
    | awk '{print "void "$1"(void){}"}' > "$work/$1.c"
  gcc -shared -fPIC -o "$cuda/lib/lib$1.so" -Wl,-soname,"$2" "$work/$1.c"
}
stub cuda libcuda.so.1 cu "$cudarc/src/driver/sys/mod.rs"
stub curand libcurand.so.10 curand "$cudarc/src/curand/sys/mod.rs"
stub cublas libcublas.so.13 cublas "$cudarc/src/cublas/sys/mod.rs"
stub cublasLt libcublasLt.so.13 cublasLt "$cudarc/src/cublaslt/sys/mod.rs"
stub nvrtc libnvrtc.so.13 nvrtc "$cudarc/src/nvrtc/sys/mod.rs"
ln -sf libcudart.so.13 "$cuda/lib/libcudart.so"   # the runtime itself comes with the nvcc wheels
export CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_ROOT="$cuda" PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP=90
export NVCC_APPEND_FLAGS="-I$cuda/include/cccl"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-cuda}
cd "$repo"
cargo bench -p vitrine-udfs --features cuda --bench smolvlm_generate --bench smolvlm_finetune --bench smolvlm_agreement --bench clip_embed --bench image_prep --no-run --locked \
  --message-format=short 2>&1 | tee "$work/build.log"
cargo test --release -p vitrine-udfs --features cuda --test smolvlm_fidelity --test clip_fidelity --test device_kernels --no-run --locked \
  --message-format=short 2>&1 | tee -a "$work/build.log"
for name in smolvlm_generate smolvlm_finetune smolvlm_agreement clip_embed image_prep smolvlm_fidelity clip_fidelity device_kernels; do
  binary=$(grep -oE "\(/[^)]*/deps/$name-[0-9a-f]+\)" "$work/build.log" | tail -1 | tr -d '()')
  xz -9 -T0 -c "$binary" > "$out/$name.xz"
done
# The peer writes the model folders on the GPU machine; the processor configs go from here, so
# that both sides read what the CPU measurement read (the GPU machine's transformers is older).
for shape in 256m 2.2b; do
  python3 benches/peers/smolvlm_peers.py prepare "$work/shape-$shape" --shape "$shape" --no-weights --images 1 >/dev/null
  mkdir -p "$out/$shape" && cp "$work/shape-$shape/model/processor_config.json" "$out/$shape/"
done
cp benches/gpu/cuda_env.sh benches/gpu/run_smolvlm.sh benches/gpu/run_finetune.sh benches/gpu/run_clip.sh \
  benches/gpu/run_agreement.sh benches/gpu/run_all.sh benches/gpu/fidelity.sh "$out/"
echo "built into $out"
