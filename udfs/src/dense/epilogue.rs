//! What follows a linear layer's product off the CPU kernel path (a GPU's layers, half
//! precision), in one pass over the product: its bias added and its activation applied
//! ([`bias_then`]), or SwiGLU's `silu(gate) · up` ([`swiglu`]). candle adds a bias with its
//! broadcasting kernel, which took 15–52 µs a layer of SmolVLM's vision tower on an H200 where
//! a same-shape add took 5, and then runs the activation as another pass. Both here compute in
//! f32 between reading and writing the tensors' type (`epilogue.cu`, compiled to PTX by
//! `build.rs` with the `cuda` feature; the same loops on the CPU). No backward pass: callers
//! compose these steps when a gradient is tracked.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType, D};

use super::Activation;
use crate::cpu_ops;

/// `activation(product + bias)`, `bias` one value per column of `product` (…, columns), in
/// `product`'s type; no activation adds the bias alone. An error when a gradient is tracked or
/// the bias is not one value per column.
pub fn bias_then(
    product: &Tensor,
    bias: &Tensor,
    activation: Option<Activation>,
) -> Result<Tensor> {
    if product.track_op() || bias.track_op() {
        candle_core::bail!("bias_then has no backward pass; compose it instead");
    }
    let columns = product.dim(D::Minus1)?;
    if bias.elem_count() != columns || bias.dtype() != product.dtype() {
        candle_core::bail!(
            "a bias of {:?} {:?} for a product of {:?} {:?}",
            bias.shape(),
            bias.dtype(),
            product.shape(),
            product.dtype()
        );
    }
    product
        .contiguous()?
        .apply_op2_no_bwd(&bias.contiguous()?, &BiasActivation { activation })
}

/// `silu(gate) · up` for a product whose last dimension is the gate projection's outputs,
/// then the up projection's, as many of each: half as wide, in the product's type. An error
/// when a gradient is tracked or the width is odd.
pub fn swiglu(product: &Tensor) -> Result<Tensor> {
    if product.track_op() {
        candle_core::bail!("swiglu has no backward pass; compose it instead");
    }
    if product.dim(D::Minus1)? % 2 != 0 {
        candle_core::bail!("SwiGLU needs an even width, not {:?}", product.shape());
    }
    product.contiguous()?.apply_op1_no_bwd(&SwiGlu)
}

/// The activation on the CPU, as `epilogue.cu` computes it.
fn activate(activation: Option<Activation>, v: f32) -> f32 {
    match activation {
        None => v,
        Some(Activation::GeluTanh) => cpu_ops::gelu_tanh(v),
        Some(Activation::Gelu) => {
            0.5 * v * (1.0 + candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2))
        }
        Some(Activation::QuickGelu) => cpu_ops::quick_gelu(v),
    }
}

/// `values` (contiguous at `layout`) as f32, whatever their float type.
fn cpu_values(storage: &CpuStorage, layout: &Layout) -> Result<Vec<f32>> {
    fn convert<T: WithDType>(values: &[T]) -> Vec<f32> {
        values.iter().map(|v| v.to_f64() as f32).collect()
    }
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("the epilogues read contiguous tensors");
    };
    Ok(match storage {
        CpuStorage::F32(v) => v[start..end].to_vec(),
        CpuStorage::BF16(v) => convert(&v[start..end]),
        CpuStorage::F16(v) => convert(&v[start..end]),
        _ => candle_core::bail!("the epilogues take f32, bf16 or f16 tensors"),
    })
}

/// `values` as a storage of `like`'s type.
fn cpu_storage(values: Vec<f32>, like: &CpuStorage) -> CpuStorage {
    fn convert<T: WithDType>(values: Vec<f32>) -> Vec<T> {
        values
            .into_iter()
            .map(|v| T::from_f64(f64::from(v)))
            .collect()
    }
    match like {
        CpuStorage::BF16(_) => CpuStorage::BF16(convert(values)),
        CpuStorage::F16(_) => CpuStorage::F16(convert(values)),
        _ => CpuStorage::F32(values),
    }
}

/// [`bias_then`]'s operation.
struct BiasActivation {
    activation: Option<Activation>,
}

impl CustomOp2 for BiasActivation {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(
        &self,
        product: &CpuStorage,
        layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let mut values = cpu_values(product, layout)?;
        let bias = cpu_values(bias, bias_layout)?;
        for row in values.chunks_exact_mut(bias.len().max(1)) {
            for (v, b) in row.iter_mut().zip(&bias) {
                *v = activate(self.activation, *v + b);
            }
        }
        Ok((cpu_storage(values, product), layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        product: &candle_core::CudaStorage,
        layout: &Layout,
        bias: &candle_core::CudaStorage,
        bias_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let launch = cuda::BiasLaunch {
            activation: self.activation,
            bias,
            bias_layout,
        };
        Ok((
            crate::gpu::run(&launch, product, layout)?,
            layout.shape().clone(),
        ))
    }
}

/// [`swiglu`]'s operation.
struct SwiGlu;

impl SwiGlu {
    /// The output shape: the input's, half as wide.
    fn shape(layout: &Layout) -> Result<Shape> {
        let mut dims = layout.shape().dims().to_vec();
        *dims.last_mut().expect("a last dimension") /= 2;
        Ok(Shape::from(dims))
    }
}

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let values = cpu_values(storage, layout)?;
        let half = layout.shape().dims().last().copied().unwrap_or(0) / 2;
        let out: Vec<f32> = values
            .chunks_exact((2 * half).max(1))
            .flat_map(|row| {
                let (gate, up) = row.split_at(half);
                gate.iter().zip(up).map(|(&g, &u)| cpu_ops::silu(g) * u)
            })
            .collect();
        Ok((cpu_storage(out, storage), Self::shape(layout)?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let half = layout.shape().dims().last().copied().unwrap_or(0) / 2;
        let out = crate::gpu::run(&cuda::SwiGluLaunch { half }, storage, layout)?;
        Ok((out, Self::shape(layout)?))
    }
}

/// The launches of `epilogue.cu`'s kernels.
#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::{
        CudaSlice, CudaView, DeviceRepr, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
    use candle_core::{CudaStorage, Layout, Result};

    use super::Activation;
    use crate::gpu::{elementwise, FloatKernel};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/epilogue.ptx"));
    const MODULE: &str = "vitrine_epilogue";

    /// The activation's number in `epilogue.cu`.
    fn code(activation: Option<Activation>) -> i32 {
        match activation {
            None => 0,
            Some(Activation::GeluTanh) => 1,
            Some(Activation::Gelu) => 2,
            Some(Activation::QuickGelu) => 3,
        }
    }

    /// `bias_activation_*` with its bias and activation.
    pub(super) struct BiasLaunch<'a> {
        pub(super) activation: Option<Activation>,
        pub(super) bias: &'a CudaStorage,
        pub(super) bias_layout: &'a Layout,
    }

    impl FloatKernel for BiasLaunch<'_> {
        fn launch<T: CudaDType + DeviceRepr>(
            &self,
            device: &CudaDevice,
            suffix: &str,
            product: &CudaView<T>,
        ) -> Result<CudaSlice<T>> {
            let Some((start, end)) = self.bias_layout.contiguous_offsets() else {
                candle_core::bail!("the bias must be contiguous");
            };
            let bias = self.bias.as_cuda_slice::<T>()?.slice(start..end);
            let count = product.len();
            let columns = (end - start) as u32;
            let activation = code(self.activation);
            // SAFETY: the kernel writes every element.
            let out = unsafe { device.alloc::<T>(count)? };
            if count == 0 {
                return Ok(out);
            }
            let func = device.get_or_load_custom_func(
                &format!("bias_activation_{suffix}"),
                MODULE,
                PTX,
            )?;
            let mut builder = func.builder();
            builder
                .arg(product)
                .arg(&bias)
                .arg(&out)
                .arg(&count)
                .arg(&columns)
                .arg(&activation);
            // SAFETY: the kernel reads `count` values and `columns` biases (checked by
            // `bias_then`: one per column) and writes `count` values.
            unsafe { builder.launch(elementwise(count)) }.w()?;
            Ok(out)
        }
    }

    /// `swiglu_*` over rows of `2 · half` values.
    pub(super) struct SwiGluLaunch {
        pub(super) half: usize,
    }

    impl FloatKernel for SwiGluLaunch {
        fn launch<T: CudaDType + DeviceRepr>(
            &self,
            device: &CudaDevice,
            suffix: &str,
            product: &CudaView<T>,
        ) -> Result<CudaSlice<T>> {
            let count = product.len() / 2;
            // SAFETY: the kernel writes every element.
            let out = unsafe { device.alloc::<T>(count)? };
            if count == 0 {
                return Ok(out);
            }
            let func = device.get_or_load_custom_func(&format!("swiglu_{suffix}"), MODULE, PTX)?;
            let half = self.half as u32;
            let mut builder = func.builder();
            builder.arg(product).arg(&out).arg(&count).arg(&half);
            // SAFETY: the kernel reads rows of 2 · half values and writes rows of half.
            unsafe { builder.launch(elementwise(count)) }.w()?;
            Ok(out)
        }
    }
}
