# Sourced by the run scripts and fidelity.sh on the GPU machine: puts PyTorch's CUDA 13 libraries
# (cuBLAS, cuBLASLt, cuRAND, the runtime), which the carried binaries load, on the loader's path.
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
libs=$(find /opt /usr/local /usr/lib -name 'libcublas.so.13' -o -name 'libcurand.so.10' -o -name 'libcudart.so.13' \
  -o -name 'libcublasLt.so.13' 2>/dev/null | xargs -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:-}"
# unpack NAME: OUT_DIR's NAME.xz as the executable /tmp/NAME (Python's lzma: the image may lack xz)
unpack() {
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$here/$1.xz" "/tmp/$1" && chmod +x "/tmp/$1"
}
