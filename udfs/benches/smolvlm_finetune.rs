//! SmolVLM fine-tuning throughput (every weight, or LoRA adapters), for `benches/RESULTS.md`;
//! its peer is `benches/peers/smolvlm_peers.py finetune` (transformers + PEFT on the same files).
//!
//! ```text
//! cargo bench -p vitrine-udfs --bench smolvlm_finetune -- DIR [--mode full|lora]
//!     [--batch-size 8] [--steps 10] [--lora-rank 16] [--device auto|cpu|cuda]
//! ```
//!
//! `DIR` is a folder written by `smolvlm_peers.py prepare`: `model/` (an Idefics3 folder) and
//! `images.txt`. `prompt.txt` (the question) and `answers.txt` (one extraction JSON per photo)
//! are written here when absent, so that the peer trains on the same pairs. Every photo is read
//! and processed first; then one warm-up step and `--steps` timed steps of `CREATE MODEL`'s
//! training (f32, the answer's causal-LM loss, AdamW), each reading its loss back as `fit` does.
//! LoRA adapts all seven projections of the text model (rank `--lora-rank`, alpha twice the rank).
//! Prints one Markdown row, as the peer does; peak memory is measured outside the process.

mod args;

use std::path::{Path, PathBuf};
use std::time::Instant;

use args::{arguments, positive};
use vitrine_udfs::image::decode::decode_rgb;
use vitrine_udfs::runtime::placement::Placement;
use vitrine_udfs::runtime::source::Hub;
use vitrine_udfs::smolvlm::extract::default_prompt;
use vitrine_udfs::smolvlm::model::{AnswerExample, SMOLVLM_FILES};
use vitrine_udfs::smolvlm::prompt::chat_prompt;
use vitrine_udfs::smolvlm::train::{LoraOptions, SmolVlmTraining};
use vitrine_udfs::train::optimizer::{AdamW, AdamWSettings};
use vitrine_udfs::train::{parameter_count, Trainable};

/// As in the `vitrine` binary: freed tensor buffers are reused instead of returned to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The projections LoRA adapts, on both sides.
const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

struct Options {
    dir: PathBuf,
    lora: bool,
    batch_size: usize,
    steps: usize,
    lora_rank: usize,
    device: String,
}

fn options() -> Result<Options, String> {
    let mut args = arguments();
    let mut options = Options {
        dir: PathBuf::new(),
        lora: false,
        batch_size: 8,
        steps: 10,
        lora_rank: 16,
        device: "auto".into(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mode" => {
                options.lora = match args.next().as_deref() {
                    Some("full") => false,
                    Some("lora") => true,
                    other => return Err(format!("--mode takes full or lora, got {other:?}")),
                }
            }
            "--batch-size" => options.batch_size = positive(args.next(), "--batch-size")?,
            "--steps" => options.steps = positive(args.next(), "--steps")?,
            "--lora-rank" => options.lora_rank = positive(args.next(), "--lora-rank")?,
            "--device" => options.device = args.next().ok_or("--device takes a value")?,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            dir => options.dir = PathBuf::from(dir),
        }
    }
    if options.dir.as_os_str().is_empty() {
        return Err(
            "usage: smolvlm_finetune DIR [--mode full|lora] [--batch-size 8] \
                    [--steps 10] [--lora-rank 16] [--device D]"
                .into(),
        );
    }
    Ok(options)
}

fn read_lines(path: &Path) -> Result<Vec<String>, String> {
    Ok(std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The file's content, written from `make` first when the file is absent.
fn read_or_write(path: &Path, make: impl FnOnce() -> String) -> Result<String, String> {
    if !path.exists() {
        std::fs::write(path, make()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// An extraction answer for the `i`-th photo, drawn from REFERENCE §4's vocabulary.
fn answer(i: usize) -> String {
    const MATERIALS: [&str; 4] = ["cotton", "denim", "wool", "polyester"];
    const PATTERNS: [&str; 4] = ["solid", "striped", "floral", "checked"];
    const SLEEVES: [&str; 3] = ["short sleeve", "long sleeve", "sleeveless"];
    const COLLARS: [&str; 3] = ["crew neck", "v-neck", "collared"];
    format!(
        r#"{{"material": "{}", "pattern": "{}", "sleeve_length": "{}", "collar_type": "{}"}}"#,
        MATERIALS[i % 4],
        PATTERNS[i / 4 % 4],
        SLEEVES[i % 3],
        COLLARS[i / 3 % 3]
    )
}

fn main() -> Result<(), String> {
    vitrine_udfs::runtime::allocator::keep_freed_memory();
    let options = options()?;
    let placement = Placement::parse(&options.device, "f32").map_err(|e| e.to_string())?;
    let source = Hub::new("/nonexistent", true)
        .locate(
            options.dir.join("model").to_str().ok_or("non-UTF-8 path")?,
            SMOLVLM_FILES,
        )
        .map_err(|e| e.to_string())?;
    let photos = read_lines(&options.dir.join("images.txt"))?;
    let question = read_or_write(&options.dir.join("prompt.txt"), default_prompt)?;
    let answers = read_or_write(&options.dir.join("answers.txt"), || {
        (0..photos.len()).map(|i| answer(i) + "\n").collect()
    })?;
    let answers: Vec<&str> = answers.lines().collect();
    if answers.len() < photos.len() {
        return Err(format!(
            "answers.txt has {} lines for {} photos",
            answers.len(),
            photos.len()
        ));
    }

    let loading = Instant::now();
    let lora = options.lora.then(|| LoraOptions {
        rank: options.lora_rank,
        alpha: 2.0 * options.lora_rank as f64,
        targets: LORA_TARGETS.iter().map(|t| t.to_string()).collect(),
    });
    let training = SmolVlmTraining::from_weights(&source, &placement, lora.as_ref(), 0)
        .map_err(|e| e.to_string())?;
    let load_seconds = loading.elapsed().as_secs_f64();
    let model = training.model();
    let prompt = chat_prompt(&question);
    let examples = photos
        .iter()
        .zip(&answers)
        .map(|(path, answer)| {
            let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            let rgb = decode_rgb(&bytes).map_err(|e| format!("{path}: {e}"))?;
            let image = model.processor().process(&rgb);
            let mut ids = model
                .prompt_ids(&prompt, (image.rows, image.cols))
                .map_err(|e| e.to_string())?;
            let answer_from = ids.len();
            ids.extend(model.answer_ids(answer).map_err(|e| e.to_string())?);
            Ok(AnswerExample {
                ids,
                answer_from,
                image,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let variables = training.variables();
    let trained = parameter_count(&variables);
    let settings = AdamWSettings {
        learning_rate: if options.lora { 1e-4 } else { 1e-5 },
        ..AdamWSettings::default()
    };
    let mut optimizer = AdamW::new(variables, settings).map_err(|e| e.to_string())?;
    let mut step = |s: usize| -> Result<f32, String> {
        let batch: Vec<&AnswerExample> = (0..options.batch_size)
            .map(|i| &examples[(s * options.batch_size + i) % examples.len()])
            .collect();
        let loss = training.loss(&batch).map_err(|e| e.to_string())?;
        let value = loss.to_scalar::<f32>().map_err(|e| e.to_string())?;
        optimizer.backward_step(&loss).map_err(|e| e.to_string())?;
        Ok(value)
    };
    let first_loss = step(0)?;
    let started = Instant::now();
    let mut last_loss = first_loss;
    for s in 1..=options.steps {
        last_loss = step(s)?;
    }
    placement.device.synchronize().map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens = examples[0].ids.len();
    println!(
        "vitrine (candle) on {}: loaded in {load_seconds:.1} s; {} frame(s), {tokens} tokens per example; loss {first_loss:.4} → {last_loss:.4}",
        placement.describe(),
        examples[0].image.frames.len(),
    );
    println!("| side | mode | trained values | batch | steps | ms per step | examples/s |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| vitrine | {} | {trained} | {} | {} | {:.1} | {:.2} |",
        if options.lora {
            format!("lora r{}", options.lora_rank)
        } else {
            "full".into()
        },
        options.batch_size,
        options.steps,
        1000.0 * seconds / options.steps as f64,
        (options.steps * options.batch_size) as f64 / seconds,
    );
    Ok(())
}
