//! With the `cuda` feature, compiles the crate's CUDA kernels (`src/**/*.cu`) to PTX in
//! `OUT_DIR` with nvcc (from `CUDA_HOME`/`CUDA_PATH`, else the `PATH`), for the compute
//! capability `CUDA_COMPUTE_CAP` names (default 80); the driver compiles the PTX for the GPU it
//! runs on. Without the feature, nothing is built.

use std::path::PathBuf;
use std::process::Command;

/// The kernels, each compiled to `OUT_DIR/<stem>.ptx`.
const KERNELS: &[&str] = &["src/attention/softmax.cu", "src/dense/epilogue.cu"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|home| PathBuf::from(home).join("bin/nvcc"))
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let capability = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    for source in KERNELS {
        println!("cargo::rerun-if-changed={source}");
        let stem = PathBuf::from(source);
        let ptx = out.join(stem.with_extension("ptx").file_name().expect("a file name"));
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=compute_{capability}"))
            .arg(source)
            .arg("-o")
            .arg(&ptx)
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e}", nvcc.display()));
        assert!(status.success(), "nvcc failed on {source}");
    }
}
