//! Attention alone on the CPU (`vitrine_udfs::attention::attend`), at the shapes SmolVLM-256M
//! gives it: its peer is `benches/peers/attention_peers.py`, PyTorch's
//! `scaled_dot_product_attention` on the same shapes.
//!
//! ```text
//! cargo bench -p vitrine-udfs --bench attention -- [--batch-sizes 1,8] [--repeat 5]
//! ```
//!
//! The cases: `vision`, the SigLIP tower's (12 heads of 64, 1,024 patches, no mask); `prefill`,
//! the decoder's over the 754-token prompt (9 query heads sharing 3 key heads, causal mask);
//! `decode`, one decoding step's (one query per sequence against 818 keys). Each runs on
//! random values once to warm up, then `--repeat` times; the best is printed as milliseconds
//! and GFLOP/s (the two products' multiply-adds counted twice, every key counted: a causal
//! mask's hidden half too, as the peer counts it), in the Markdown table the peer also prints.

mod args;
mod timing;

use args::{arguments, positive, positive_list};
use candle_core::{Device, Tensor};
use timing::best_of;
use vitrine_udfs::attention::attend;

/// As in the `vitrine` binary: freed tensor buffers are reused instead of returned to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: attention [--batch-sizes 1,8] [--repeat R]";

/// One shape of attention: query heads, key heads, queries, keys, head size, causal or not.
struct Case {
    name: &'static str,
    heads: usize,
    key_heads: usize,
    queries: usize,
    keys: usize,
    size: usize,
    causal: bool,
}

const CASES: [Case; 3] = [
    Case {
        name: "vision",
        heads: 12,
        key_heads: 12,
        queries: 1024,
        keys: 1024,
        size: 64,
        causal: false,
    },
    Case {
        name: "prefill",
        heads: 9,
        key_heads: 3,
        queries: 754,
        keys: 754,
        size: 64,
        causal: true,
    },
    Case {
        name: "decode",
        heads: 9,
        key_heads: 3,
        queries: 1,
        keys: 818,
        size: 64,
        causal: false,
    },
];

fn main() -> Result<(), String> {
    vitrine_udfs::runtime::allocator::keep_freed_memory();
    let (mut batch_sizes, mut repeat) = (vec![1, 8], 5);
    let mut args = arguments();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--batch-sizes" => batch_sizes = positive_list(args.next(), "--batch-sizes")?,
            "--repeat" => repeat = positive(args.next(), "--repeat")?,
            _ => return Err(USAGE.into()),
        }
    }
    println!(
        "vitrine attention on cpu f32, {} threads",
        rayon::current_num_threads()
    );
    println!("| case | batch | ms | GFLOP/s |\n|---|---|---|---|");
    for case in &CASES {
        for &batch in &batch_sizes {
            let seconds = time(case, batch, repeat).map_err(|e| format!("{}: {e}", case.name))?;
            let flops = 4 * batch * case.heads * case.queries * case.keys * case.size;
            println!(
                "| {} | {batch} | {:.2} | {:.1} |",
                case.name,
                seconds * 1e3,
                flops as f64 / seconds / 1e9
            );
        }
    }
    Ok(())
}

/// Best seconds of `repeat` calls of `attend` on `case` at `batch`, after one to warm up.
fn time(case: &Case, batch: usize, repeat: usize) -> candle_core::Result<f64> {
    let device = Device::Cpu;
    let values = |heads: usize, rows: usize| {
        Tensor::randn(0f32, 1.0, (batch, heads, rows, case.size), &device)
    };
    let q = values(case.heads, case.queries)?;
    let (k, v) = (
        values(case.key_heads, case.keys)?,
        values(case.key_heads, case.keys)?,
    );
    let mask = case
        .causal
        .then(|| {
            let hidden: Vec<f32> = (0..case.queries * case.keys)
                .map(|i| {
                    let (query, key) = (i / case.keys, i % case.keys);
                    if key + case.queries > query + case.keys {
                        f32::MIN
                    } else {
                        0.0
                    }
                })
                .collect();
            Tensor::from_vec(hidden, (1, 1, case.queries, case.keys), &device)
        })
        .transpose()?;
    let scale = (case.size as f64).powf(-0.5);
    let run = || -> candle_core::Result<()> {
        attend(&q, &k, &v, scale, mask.as_ref())?
            .map(|_| ())
            .ok_or_else(|| candle_core::Error::Msg("attend refused the inputs".into()))
    };
    run()?;
    best_of(repeat, run)
}
