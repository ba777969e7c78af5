//! CLIP embedding throughput of the model crate alone, without the SQL engine: the GPU half of
//! `vitrine bench clip` (the engine is not built for the GPU machine, see `benches/gpu/`); its
//! peer is `benches/peers/clip_peers.py`, which prepares the folder and times transformers on
//! the same files.
//!
//! ```text
//! cargo bench -p vitrine-udfs --bench clip_embed -- DIR [--batch-sizes 1,8,32,auto] [--texts N]
//!     [--images N] [--repeat 2] [--device auto|cpu|cuda] [--dtype auto|f32|bf16|f16] [--column]
//! ```
//!
//! `DIR` holds `model/` (a CLIP folder), `texts.txt` (one text per line) and `images.txt` (one
//! photo path per line); `auto` is the batch `vitrine.udf.batch_size = auto` chooses on the
//! device for texts and for photos. For each batch size, `N` texts and `N` photos (default: as
//! many as the files list; fewer are repeated) are embedded in batches: texts tokenized then
//! embedded, in the file's order or with `--column` in the order `clip_text_embed` gives a
//! column's texts ([`ClipEmbedder::batch_order`]); photos read, decoded and preprocessed in
//! parallel one batch ahead of the model, as `clip_image_embed` does. The best of `--repeat` runs is printed as rows per second in the
//! Markdown table the peer also prints, with the share of the photos' time the model waited for
//! them to be prepared and, where texts run packed, the share of their tokens computed (texts
//! of a batch that begin alike compute those tokens once).

mod args;
mod timing;

use std::path::Path;
use std::time::Instant;

use args::{arguments, batch_sizes, positive};
use rayon::prelude::*;
use timing::best_of;
use vitrine_udfs::attention::{self, Packing};
use vitrine_udfs::clip::{ClipEmbedder, CLIP_FILES};
use vitrine_udfs::image::decode::decode_rgb;
use vitrine_udfs::runtime::batching::BatchSize;
use vitrine_udfs::runtime::overlap::overlapped;
use vitrine_udfs::runtime::placement::Placement;
use vitrine_udfs::runtime::source::Hub;

/// As in the `vitrine` binary: freed tensor buffers are reused instead of returned to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: clip_embed DIR [--batch-sizes 1,8,32,auto] [--texts N] [--images N] \
                     [--repeat R] [--device D] [--dtype T] [--column]";

/// `path`'s non-empty lines, repeated in order up to `count` when given.
fn lines(path: &Path, count: Option<usize>) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        return Err(format!("{}: no lines", path.display()));
    }
    let count = count.unwrap_or(lines.len());
    Ok(lines.iter().cycle().take(count).cloned().collect())
}

fn embed_texts(model: &ClipEmbedder, texts: &[String], batch: usize) -> Result<(), String> {
    for chunk in texts.chunks(batch) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let ids = model.tokenize(&chunk).map_err(|e| e.to_string())?;
        let vectors = model.embed_texts(&ids).map_err(|e| e.to_string())?;
        assert_eq!(vectors.len(), chunk.len());
    }
    Ok(())
}

/// The share of `texts`' tokens computed in batches of `batch` where they run packed (the rest
/// are beginnings an earlier text of the batch shares, see [`Packing`]); `None` elsewhere.
fn tokens_computed(
    model: &ClipEmbedder,
    texts: &[String],
    batch: usize,
) -> Result<Option<f64>, String> {
    let placement = model.placement();
    if !attention::kernel_runs_on(&placement.device, placement.dtype) {
        return Ok(None);
    }
    let (mut rows, mut tokens) = (0, 0);
    for chunk in texts.chunks(batch) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let packing =
            Packing::sharing_prefixes(&model.tokenize(&chunk).map_err(|e| e.to_string())?);
        rows += packing.rows();
        tokens += packing.tokens();
    }
    Ok(Some(rows as f64 / tokens as f64))
}

/// Embeds `photos` in batches of `batch`, each batch's photos prepared while the model embeds
/// the one before; the seconds the model waited for photos.
fn embed_images(model: &ClipEmbedder, photos: &[String], batch: usize) -> Result<f64, String> {
    let prepare = |chunk: &[String]| -> Result<Vec<Vec<f32>>, String> {
        chunk
            .par_iter()
            .map(|p| {
                let bytes = std::fs::read(p).map_err(|e| format!("{p}: {e}"))?;
                let rgb = decode_rgb(&bytes).map_err(|e| format!("{p}: {e}"))?;
                Ok(model.pixel_values(&rgb))
            })
            .collect()
    };
    let (mut waited, mut asked) = (0.0, Instant::now());
    overlapped(photos.chunks(batch), prepare, |pixels| {
        waited += asked.elapsed().as_secs_f64();
        let pixels = pixels?;
        let vectors = model.embed_images(&pixels).map_err(|e| e.to_string())?;
        assert_eq!(vectors.len(), pixels.len());
        asked = Instant::now();
        Ok::<_, String>(())
    })?;
    Ok(waited)
}

fn main() -> Result<(), String> {
    vitrine_udfs::runtime::allocator::keep_freed_memory();
    let mut args = arguments();
    let mut sizes = vec![BatchSize::Rows(1), BatchSize::Rows(8), BatchSize::Rows(32)];
    let (mut dir, mut repeat) = (None, 2);
    let (mut n_texts, mut n_images) = (None, None);
    let (mut device, mut dtype) = ("auto".to_string(), "auto".to_string());
    let mut column = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--batch-sizes" => sizes = batch_sizes(args.next(), "--batch-sizes")?,
            "--texts" => n_texts = Some(positive(args.next(), "--texts")?),
            "--images" => n_images = Some(positive(args.next(), "--images")?),
            "--repeat" => repeat = positive(args.next(), "--repeat")?,
            "--device" => device = args.next().ok_or("--device takes a value")?,
            "--dtype" => dtype = args.next().ok_or("--dtype takes a value")?,
            "--column" => column = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => dir = Some(std::path::PathBuf::from(path)),
        }
    }
    let dir = dir.ok_or(USAGE)?;
    let placement = Placement::parse(&device, &dtype).map_err(|e| e.to_string())?;
    let source = Hub::new("/nonexistent", true)
        .locate(
            dir.join("model").to_str().ok_or("non-UTF-8 path")?,
            CLIP_FILES,
        )
        .map_err(|e| e.to_string())?;
    let loading = Instant::now();
    let model = ClipEmbedder::load(&source, placement.clone()).map_err(|e| e.to_string())?;
    let load_seconds = loading.elapsed().as_secs_f64();
    let mut texts = lines(&dir.join("texts.txt"), n_texts)?;
    if column {
        let all: Vec<&str> = texts.iter().map(String::as_str).collect();
        let order = model.batch_order(&model.tokenize(&all).map_err(|e| e.to_string())?);
        texts = order.into_iter().map(|i| texts[i].clone()).collect();
    }
    let photos = lines(&dir.join("images.txt"), n_images)?;
    embed_texts(&model, &texts[..1], 1)?;
    embed_images(&model, &photos[..1], 1)?;
    println!(
        "vitrine (candle) on {}: model loaded in {load_seconds:.1} s; {} texts, {} images",
        placement.describe(),
        texts.len(),
        photos.len()
    );
    println!("| batch | texts/s | images/s | waited for photos | text tokens computed |");
    println!("|---:|---:|---:|---:|---:|");
    let device = &model.placement().device;
    for &setting in &sizes {
        let text_batch = setting.model_rows(device, || model.text_row_cost());
        let image_batch = setting.model_rows(device, || model.image_row_cost());
        let text_seconds = best_of(repeat, || embed_texts(&model, &texts, text_batch))?;
        let (mut image_seconds, mut waited) = (f64::INFINITY, 0.0);
        for _ in 0..repeat {
            let started = Instant::now();
            let wait = embed_images(&model, &photos, image_batch)?;
            let seconds = started.elapsed().as_secs_f64();
            if seconds < image_seconds {
                (image_seconds, waited) = (seconds, wait);
            }
        }
        let batch = match setting {
            BatchSize::Rows(rows) => rows.to_string(),
            BatchSize::Auto => format!("auto: {text_batch} texts, {image_batch} photos"),
        };
        let computed = match tokens_computed(&model, &texts, text_batch)? {
            Some(share) => format!("{:.1} %", 100.0 * share),
            None => "every one".to_string(),
        };
        println!(
            "| {batch} | {:.1} | {:.1} | {:.0} % | {computed} |",
            texts.len() as f64 / text_seconds,
            photos.len() as f64 / image_seconds,
            100.0 * waited / image_seconds
        );
    }
    Ok(())
}
