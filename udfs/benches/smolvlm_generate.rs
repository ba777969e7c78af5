//! SmolVLM generation throughput, for `benches/RESULTS.md`; its peer is
//! `benches/peers/smolvlm_peers.py`, which prepares the folder and times transformers on the same
//! files.
//!
//! ```text
//! cargo bench -p vitrine-udfs --bench smolvlm_generate -- DIR [--batch-sizes 1,8,32,auto]
//!     [--new-tokens 64] [--images N] [--repeat 1] [--device auto|cpu|cuda]
//!     [--dtype auto|f32|bf16|f16] [--drafts N] [--whole-logits]
//! ```
//!
//! `DIR` holds `model/` (an Idefics3 folder), `images.txt` (photo paths, one per line) and
//! `prompt.txt` (the question; written here with `smolvlm_extract`'s default prompt when absent,
//! so that the peer asks the same). `auto` is the batch `vitrine.udf.batch_size = auto` chooses
//! on the device (printed with the memory it counted). For each batch size, `N` photos (default: the batch size,
//! at least 8) are read, decoded, processed and answered in batches with exactly `--new-tokens`
//! greedy tokens each (no early stop), after one warm-up batch; the best of `--repeat` runs is
//! printed as images/s and generated tokens/s in the Markdown table the peer also prints, with
//! how long the model waited for the photos. As `smolvlm_extract` does, the next batch's photos
//! are read and processed (in parallel) while the model answers the current one.
//! `--drafts N` has decoding check at most `N` drafts a step for each sequence (0: none;
//! default: the model's for its device) and `--whole-logits` has greedy choices computed from
//! every logit, without the CPU's int8 screen of the vocabulary: the two measure those
//! levers within one build.

mod args;

use std::path::{Path, PathBuf};
use std::time::Instant;

use args::{arguments, batch_sizes, count, positive};
use rayon::prelude::*;
use vitrine_udfs::image::decode::decode_rgb;
use vitrine_udfs::runtime::batching::{free_memory, BatchSize};
use vitrine_udfs::runtime::overlap::overlapped;
use vitrine_udfs::runtime::placement::Placement;
use vitrine_udfs::runtime::source::Hub;
use vitrine_udfs::smolvlm::extract::default_prompt;
use vitrine_udfs::smolvlm::model::{SmolVlm, SMOLVLM_FILES};
use vitrine_udfs::smolvlm::processor::{Idefics3ImageProcessor, ProcessedImage};
use vitrine_udfs::smolvlm::prompt::chat_prompt;

/// As in the `vitrine` binary: freed tensor buffers are reused instead of returned to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    dir: PathBuf,
    batch_sizes: Vec<BatchSize>,
    new_tokens: usize,
    images: Option<usize>,
    device: String,
    dtype: String,
    repeat: usize,
    drafts: Option<usize>,
    whole_logits: bool,
}

fn options() -> Result<Options, String> {
    let mut args = arguments();
    let mut options = Options {
        dir: PathBuf::new(),
        batch_sizes: vec![BatchSize::Rows(1), BatchSize::Rows(8), BatchSize::Rows(32)],
        new_tokens: 64,
        images: None,
        device: "auto".into(),
        dtype: "auto".into(),
        repeat: 1,
        drafts: None,
        whole_logits: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--batch-sizes" => options.batch_sizes = batch_sizes(args.next(), "--batch-sizes")?,
            "--new-tokens" => options.new_tokens = positive(args.next(), "--new-tokens")?,
            "--images" => options.images = Some(positive(args.next(), "--images")?),
            "--repeat" => options.repeat = positive(args.next(), "--repeat")?,
            "--device" => options.device = args.next().ok_or("--device takes a value")?,
            "--dtype" => options.dtype = args.next().ok_or("--dtype takes a value")?,
            "--drafts" => options.drafts = Some(count(args.next(), "--drafts")?),
            "--whole-logits" => options.whole_logits = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            dir => options.dir = PathBuf::from(dir),
        }
    }
    if options.dir.as_os_str().is_empty() {
        return Err(
            "usage: smolvlm_generate DIR [--batch-sizes 1,8,32,auto] [--new-tokens 64] \
                    [--images N] [--repeat R] [--device D] [--dtype T]"
                .into(),
        );
    }
    Ok(options)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads, decodes and processes `photos` in parallel.
fn prepare(
    processor: &Idefics3ImageProcessor,
    photos: &[String],
) -> Result<Vec<ProcessedImage>, String> {
    photos
        .par_iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| format!("{p}: {e}"))?;
            let rgb = decode_rgb(&bytes).map_err(|e| format!("{p}: {e}"))?;
            Ok(processor.process(&rgb))
        })
        .collect()
}

/// Seconds taken to answer `photos` in batches of `batch`, each batch's photos prepared while
/// the model answers the one before, and seconds the model waited for photos.
fn run(
    model: &SmolVlm,
    processor: &Idefics3ImageProcessor,
    photos: &[String],
    question: &str,
    batch: usize,
    new_tokens: usize,
) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let mut waited = 0.0;
    let mut asked = Instant::now();
    overlapped(
        photos.chunks(batch),
        |chunk| prepare(processor, chunk),
        |images| {
            waited += asked.elapsed().as_secs_f64();
            let images = images?;
            let generated = model
                .generate_each(&images, question, new_tokens, false)
                .map_err(|e| e.to_string())?;
            assert!(generated.iter().all(|g| g.len() == new_tokens));
            asked = Instant::now();
            Ok::<_, String>(())
        },
    )?;
    Ok((started.elapsed().as_secs_f64(), waited))
}

fn main() -> Result<(), String> {
    vitrine_udfs::runtime::allocator::keep_freed_memory();
    let options = options()?;
    let placement = Placement::parse(&options.device, &options.dtype).map_err(|e| e.to_string())?;
    let source = Hub::new("/nonexistent", true)
        .locate(
            options.dir.join("model").to_str().ok_or("non-UTF-8 path")?,
            SMOLVLM_FILES,
        )
        .map_err(|e| e.to_string())?;
    let loading = Instant::now();
    let mut model = SmolVlm::load(&source, placement.clone()).map_err(|e| e.to_string())?;
    if let Some(drafts) = options.drafts {
        model = model.with_drafts(drafts);
    }
    if options.whole_logits {
        model = model.with_whole_logits().map_err(|e| e.to_string())?;
    }
    let load_seconds = loading.elapsed().as_secs_f64();
    let prompt_path = options.dir.join("prompt.txt");
    if !prompt_path.exists() {
        std::fs::write(&prompt_path, default_prompt()).map_err(|e| e.to_string())?;
    }
    let asked = read(&prompt_path)?;
    let question = chat_prompt(&asked);
    let photos: Vec<String> = read(&options.dir.join("images.txt"))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let processor = model.processor();
    let first = processor.process(
        &decode_rgb(&std::fs::read(&photos[0]).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?,
    );
    let prompt_tokens = model
        .prompt_ids(&question, (first.rows, first.cols))
        .map_err(|e| e.to_string())?
        .len();
    println!(
        "vitrine (candle) on {}: model loaded in {load_seconds:.1} s; {} frame(s), {prompt_tokens} prompt tokens, {} new tokens",
        placement.describe(),
        first.frames.len(),
        options.new_tokens
    );
    let cost = model.row_cost(
        processor,
        model.question_tokens(&asked).map_err(|e| e.to_string())?,
        options.new_tokens,
    );
    let device = &placement.device;
    println!(
        "auto: {} rows a batch (a row {:.1} MB, every batch {:.1} MB; {} free)",
        BatchSize::Auto.model_rows(device, || cost),
        cost.bytes as f64 / 1e6,
        cost.fixed as f64 / 1e6,
        free_memory(device).map_or("no device memory".into(), |f| format!(
            "{:.1} GB",
            f as f64 / 1e9
        )),
    );
    run(&model, processor, &photos[..1], &question, 1, 4)?;
    println!("| batch | images | images/s | new tokens/s | waited for photos |");
    println!("|---|---|---|---|---|");
    for &setting in &options.batch_sizes {
        let batch = setting.model_rows(device, || cost);
        let n = options.images.unwrap_or(batch.max(8)).div_ceil(batch) * batch;
        let chosen: Vec<String> = photos.iter().cycle().take(n).cloned().collect();
        let (mut best, mut waited) = (f64::INFINITY, 0.0);
        for _ in 0..options.repeat {
            let (seconds, wait) = run(
                &model,
                processor,
                &chosen,
                &question,
                batch,
                options.new_tokens,
            )?;
            if seconds < best {
                (best, waited) = (seconds, wait);
            }
        }
        let rate = n as f64 / best;
        println!(
            "| {batch} | {n} | {rate:.3} | {:.1} | {:.0} % |",
            rate * options.new_tokens as f64,
            100.0 * waited / best
        );
    }
    Ok(())
}
