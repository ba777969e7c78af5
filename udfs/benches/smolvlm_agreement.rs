//! How often a SmolVLM's greedy extractions in another precision, or on another device, equal
//! its f32 extractions on the CPU: issue 19 asks that bf16 on a GPU give the f32 CPU answer
//! for at least 95 % of the demo photos (`benches/RESULTS.md`).
//!
//! ```text
//! cargo bench -p vitrine-udfs --bench smolvlm_agreement -- MODEL_DIR IMAGES_TXT
//!     [--device cpu|cuda] [--dtype bf16|f16|f32] [--batch 32] [--new-tokens 96] [--images N]
//!     [--question Q] [--steps-per-read N] [--drafts N] [--plain-reference]
//! ```
//!
//! Each photo of `IMAGES_TXT` (paths, one per line; the first `N`) is processed once, then
//! answered greedily up to `<end_of_utterance>` or `--new-tokens`, as `smolvlm_extract` answers,
//! by the model in f32 on the CPU and by the model on `--device` in `--dtype` (default: bf16 on
//! the CPU, which `vitrine` refuses there as slower than f32; here it shows what rounding
//! weights and activations to bf16 does to the answers, without a GPU). The question is the
//! model's extraction prompt unless `--question` asks another. Prints how many f32 replies
//! parse as an extraction (two replies that both fail to parse count as the same extraction:
//! read the two figures together), how many photos got the same tokens and the same parsed
//! extraction, each side's seconds, and the first photos whose extractions differ.
//! `--steps-per-read` has the compared model read its greedy tokens every `N` steps (as on a
//! GPU; the default is its device's): with `--dtype f32` on the CPU every answer must then be
//! the reference's, token for token. `--drafts N` has the compared model check up to `N` drafts
//! a step for each sequence (default: its own choice; see `SmolVlm::with_drafts`).
//! `--plain-reference` has the reference decode one token a pass, each chosen from every logit,
//! without the drafts and the int8 screen of the vocabulary that an f32 model on the CPU
//! otherwise uses: with `--dtype f32`, every answer must again be the same.

mod args;

use std::path::PathBuf;
use std::time::Instant;

use args::{arguments, count, positive};
use candle_core::{DType, Device};
use rayon::prelude::*;
use vitrine_udfs::image::decode::decode_rgb;
use vitrine_udfs::runtime::placement::Placement;
use vitrine_udfs::runtime::source::Hub;
use vitrine_udfs::smolvlm::extract::{parse_reply, Extraction};
use vitrine_udfs::smolvlm::model::{SmolVlm, SMOLVLM_FILES};
use vitrine_udfs::smolvlm::processor::ProcessedImage;
use vitrine_udfs::smolvlm::prompt::chat_prompt;

/// As in the `vitrine` binary: freed tensor buffers are reused instead of returned to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Differing photos printed.
const SHOWN: usize = 5;

struct Options {
    model: PathBuf,
    images: PathBuf,
    device: String,
    dtype: String,
    batch: usize,
    new_tokens: usize,
    count: Option<usize>,
    question: Option<String>,
    steps_per_read: Option<usize>,
    drafts: Option<usize>,
    plain_reference: bool,
}

fn options() -> Result<Options, String> {
    let mut args = arguments();
    let mut paths = Vec::new();
    let mut options = Options {
        model: PathBuf::new(),
        images: PathBuf::new(),
        device: "cpu".into(),
        dtype: "bf16".into(),
        batch: 32,
        new_tokens: 96,
        count: None,
        question: None,
        steps_per_read: None,
        drafts: None,
        plain_reference: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--device" => options.device = args.next().ok_or("--device takes a value")?,
            "--dtype" => options.dtype = args.next().ok_or("--dtype takes a value")?,
            "--batch" => options.batch = positive(args.next(), "--batch")?,
            "--new-tokens" => options.new_tokens = positive(args.next(), "--new-tokens")?,
            "--images" => options.count = Some(positive(args.next(), "--images")?),
            "--question" => options.question = Some(args.next().ok_or("--question takes a value")?),
            "--steps-per-read" => {
                options.steps_per_read = Some(positive(args.next(), "--steps-per-read")?)
            }
            "--drafts" => options.drafts = Some(count(args.next(), "--drafts")?),
            "--plain-reference" => options.plain_reference = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => paths.push(PathBuf::from(path)),
        }
    }
    let [model, images] = <[PathBuf; 2]>::try_from(paths).map_err(|_| {
        "usage: smolvlm_agreement MODEL_DIR IMAGES_TXT [--device D] [--dtype T] [--batch B] \
         [--new-tokens N] [--images N] [--question Q] [--steps-per-read N] [--drafts N] \
         [--plain-reference]"
            .to_string()
    })?;
    (options.model, options.images) = (model, images);
    Ok(options)
}

/// The placement compared with f32 on the CPU: `Placement::parse`'s, except that a half
/// precision is taken on the CPU too.
fn candidate(device: &str, dtype: &str) -> Result<Placement, String> {
    let half = match dtype {
        "bf16" => Some(DType::BF16),
        "f16" => Some(DType::F16),
        _ => None,
    };
    match (device, half) {
        ("cpu", Some(dtype)) => Ok(Placement {
            device: Device::Cpu,
            dtype,
        }),
        _ => Placement::parse(device, dtype).map_err(|e| e.to_string()),
    }
}

/// Each photo's greedy answer (token ids) by `model`, `batch` photos at a time, and the
/// seconds it took.
fn answers(
    model: &SmolVlm,
    photos: &[ProcessedImage],
    question: &str,
    batch: usize,
    new_tokens: usize,
) -> Result<(Vec<Vec<u32>>, f64), String> {
    let started = Instant::now();
    let mut answers = Vec::with_capacity(photos.len());
    for chunk in photos.chunks(batch) {
        answers.extend(
            model
                .generate_each(chunk, question, new_tokens, true)
                .map_err(|e| e.to_string())?,
        );
    }
    Ok((answers, started.elapsed().as_secs_f64()))
}

/// What a reply says, without the reply's text.
fn extraction(text: &str) -> Extraction {
    Extraction {
        raw_response: String::new(),
        ..parse_reply(text)
    }
}

fn main() -> Result<(), String> {
    vitrine_udfs::runtime::allocator::keep_freed_memory();
    let options = options()?;
    let placement = candidate(&options.device, &options.dtype)?;
    let source = Hub::new("/nonexistent", true)
        .locate(
            options.model.to_str().ok_or("non-UTF-8 path")?,
            SMOLVLM_FILES,
        )
        .map_err(|e| e.to_string())?;
    let mut reference = SmolVlm::load(&source, Placement::cpu()).map_err(|e| e.to_string())?;
    if options.plain_reference {
        reference = reference
            .with_whole_logits()
            .map_err(|e| e.to_string())?
            .with_drafts(0);
    }
    let mut compared = SmolVlm::load(&source, placement.clone()).map_err(|e| e.to_string())?;
    if let Some(steps) = options.steps_per_read {
        compared = compared.with_steps_per_read(steps);
    }
    if let Some(drafts) = options.drafts {
        compared = compared.with_drafts(drafts);
    }
    let listed = std::fs::read_to_string(&options.images)
        .map_err(|e| format!("{}: {e}", options.images.display()))?;
    let paths: Vec<&str> = listed
        .lines()
        .filter(|l| !l.is_empty())
        .take(options.count.unwrap_or(usize::MAX))
        .collect();
    let processor = reference.processor();
    let photos: Vec<ProcessedImage> = paths
        .par_iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| format!("{p}: {e}"))?;
            Ok(processor.process(&decode_rgb(&bytes).map_err(|e| format!("{p}: {e}"))?))
        })
        .collect::<Result<_, String>>()?;
    let asked = options
        .question
        .clone()
        .unwrap_or_else(|| reference.extraction_prompt());
    let question = chat_prompt(&asked);
    let (want, want_seconds) = answers(
        &reference,
        &photos,
        &question,
        options.batch,
        options.new_tokens,
    )?;
    let (got, got_seconds) = answers(
        &compared,
        &photos,
        &question,
        options.batch,
        options.new_tokens,
    )?;
    let text = |model: &SmolVlm, ids: &[u32]| model.decode(ids).map_err(|e| e.to_string());
    let (mut same_tokens, mut same_extraction, mut parsed, mut shown) = (0, 0, 0, Vec::new());
    for (i, (want, got)) in want.iter().zip(&got).enumerate() {
        let (want_text, got_text) = (text(&reference, want)?, text(&compared, got)?);
        same_tokens += usize::from(want == got);
        let expected = extraction(&want_text);
        parsed += usize::from(expected.extraction_success);
        if expected == extraction(&got_text) {
            same_extraction += 1;
        } else if shown.len() < SHOWN {
            shown.push(format!(
                "- {}: f32 {want_text:?}\n  {}: {got_text:?}",
                paths[i],
                placement.describe()
            ));
        }
    }
    let n = photos.len();
    let share = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    let shown_question: String = asked.chars().take(60).collect();
    println!(
        "{n} photos, question {shown_question:?}{}, batch {}, at most {} new tokens",
        if shown_question.len() < asked.len() {
            "…"
        } else {
            ""
        },
        options.batch,
        options.new_tokens
    );
    println!(
        "| compared | f32 replies that parse | same tokens | same extraction | cpu f32 s | {} s |",
        placement.describe()
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| {} vs cpu f32 | {parsed} ({:.1} %) | {same_tokens} ({:.1} %) | {same_extraction} ({:.1} %) | {want_seconds:.1} | {got_seconds:.1} |",
        placement.describe(),
        share(parsed),
        share(same_tokens),
        share(same_extraction),
    );
    if !shown.is_empty() {
        println!("First extractions that differ:\n{}", shown.join("\n"));
    }
    Ok(())
}
