# Sourced by run_smolvlm.sh and fidelity.sh on the GPU machine: puts PyTorch's CUDA 13 libraries
# (cuBLAS, cuBLASLt, cuRAND, the runtime), which the carried binaries load, on the loader's path.
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
libs=$(find /opt /usr/local /usr/lib -name 'libcublas.so.13' -o -name 'libcurand.so.10' -o -name 'libcudart.so.13' \
  -o -name 'libcublasLt.so.13' 2>/dev/null | xargs -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:-}"
