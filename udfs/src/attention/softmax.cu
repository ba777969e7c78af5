// The softmax of attention scores in one pass over them (attention/softmax.rs): each row of
// `scores` (rows × keys, contiguous) is scaled, the keys its query does not see are dropped,
// and the softmax of the rest is written to `out` in the scores' type, all in f32 in between.
// One block per row; its threads stride over the keys.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define THREADS 256

// The maximum (op 0) or the sum (op 1) of `value` over the block, known to every thread.
__device__ float block_reduce(float value, int op) {
    __shared__ float partial[THREADS / 32];
    for (int shift = 16; shift > 0; shift >>= 1) {
        float other = __shfl_xor_sync(0xffffffff, value, shift);
        value = op == 0 ? fmaxf(value, other) : value + other;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) partial[warp] = value;
    __syncthreads();
    value = partial[0];
    for (int w = 1; w < THREADS / 32; w++) {
        value = op == 0 ? fmaxf(value, partial[w]) : value + partial[w];
    }
    __syncthreads();  // `partial` is reused by the next reduction
    return value;
}

// `causal`: the query of row r is r % queries, at slot offset + that of its sequence, and sees
// the slots up to its own; `first_slot[r / rows_per_sequence]` is the sequence's first slot
// (slots before it are padding). A row that sees no key averages them all, as adding a mask of
// f32's lowest value to every score would.
template <typename T>
__device__ void scaled_softmax(const T *scores, T *out, const uint32_t *first_slot,
                               uint32_t keys, float scale, int causal, uint32_t queries,
                               uint32_t rows_per_sequence, uint32_t offset) {
    const size_t row = blockIdx.x;
    const T *x = scores + row * keys;
    T *y = out + row * keys;
    uint32_t lo = 0, hi = keys;
    if (causal) {
        lo = first_slot[row / rows_per_sequence];
        hi = min(keys, offset + (uint32_t)(row % queries) + 1);
    }
    if (lo >= hi) {
        for (uint32_t j = threadIdx.x; j < keys; j += THREADS) y[j] = (T)(1.0f / keys);
        return;
    }
    float top = -INFINITY;
    for (uint32_t j = lo + threadIdx.x; j < hi; j += THREADS) top = fmaxf(top, (float)x[j] * scale);
    top = block_reduce(top, 0);
    float sum = 0.0f;
    for (uint32_t j = lo + threadIdx.x; j < hi; j += THREADS) sum += expf((float)x[j] * scale - top);
    const float inverse = 1.0f / block_reduce(sum, 1);
    for (uint32_t j = threadIdx.x; j < keys; j += THREADS) {
        const float p = (j >= lo && j < hi) ? expf((float)x[j] * scale - top) * inverse : 0.0f;
        y[j] = (T)p;
    }
}

#define SCALED_SOFTMAX(T, NAME)                                                                 \
    extern "C" __global__ void NAME(const T *scores, T *out, const uint32_t *first_slot,        \
                                    uint32_t keys, float scale, int causal, uint32_t queries,   \
                                    uint32_t rows_per_sequence, uint32_t offset) {              \
        scaled_softmax<T>(scores, out, first_slot, keys, scale, causal, queries,                \
                          rows_per_sequence, offset);                                           \
    }

SCALED_SOFTMAX(float, scaled_softmax_f32)
SCALED_SOFTMAX(__nv_bfloat16, scaled_softmax_bf16)
SCALED_SOFTMAX(__half, scaled_softmax_f16)
