// What follows a linear layer's product on the GPU, in one pass over it (dense/epilogue.rs):
// the bias added and the activation applied (`bias_activation_*`), or SwiGLU's silu(gate) · up
// (`swiglu_*`), in f32 between reading and writing the layer's type. One thread per output
// value, the grid striding over the rest.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// The activations of dense::Activation, by number: 0 none, 1 GELU (tanh approximation),
// 2 GELU (erf), 3 quick GELU.
__device__ float activate(float v, int activation) {
    switch (activation) {
        case 1: return 0.5f * v * (1.0f + tanhf(0.7978845608f * v * (1.0f + 0.044715f * v * v)));
        case 2: return 0.5f * v * (1.0f + erff(v * 0.7071067812f));
        case 3: return v / (1.0f + expf(-1.702f * v));
        default: return v;
    }
}

// out = activate(x + bias), x rows × cols, bias cols.
template <typename T>
__device__ void bias_activation(const T *x, const T *bias, T *out, size_t count, uint32_t cols,
                                int activation) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)blockDim.x * gridDim.x) {
        out[i] = (T)activate((float)x[i] + (float)bias[i % cols], activation);
    }
}

// out = silu(x[:, :half]) · x[:, half:], x rows × 2·half, out rows × half.
template <typename T>
__device__ void swiglu(const T *x, T *out, size_t count, uint32_t half) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)blockDim.x * gridDim.x) {
        const size_t row = i / half, col = i % half;
        const float gate = (float)x[row * 2 * half + col];
        const float up = (float)x[row * 2 * half + half + col];
        out[i] = (T)(gate / (1.0f + expf(-gate)) * up);
    }
}

#define EPILOGUES(T, SUFFIX)                                                                    \
    extern "C" __global__ void bias_activation_##SUFFIX(const T *x, const T *bias, T *out,      \
                                                        size_t count, uint32_t cols,            \
                                                        int activation) {                       \
        bias_activation<T>(x, bias, out, count, cols, activation);                              \
    }                                                                                           \
    extern "C" __global__ void swiglu_##SUFFIX(const T *x, T *out, size_t count, uint32_t half) { \
        swiglu<T>(x, out, count, half);                                                         \
    }

EPILOGUES(float, f32)
EPILOGUES(__nv_bfloat16, bf16)
EPILOGUES(__half, f16)
