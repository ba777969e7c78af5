//! What preparing a photo costs before a model sees it: reading and decoding, then CLIP's or
//! SmolVLM's processing (resize as Pillow does, crop or cut into tiles, rescale and normalise),
//! one photo after another on one thread, and CLIP's whole preparation on every core as
//! `clip_image_embed` runs it. On a GPU this is what bounds photos a second (the model takes a
//! fraction of it); its peer is `benches/peers/image_prep_peers.py` (Pillow and transformers'
//! processors on the same files).
//!
//! ```text
//! cargo bench -p vitrine-udfs --bench image_prep -- IMAGES_TXT [--images N] [--smolvlm MODEL_DIR]
//!     [--repeat 3]
//! ```
//!
//! `IMAGES_TXT` lists photo paths, one per line (repeated up to `N` photos when given); CLIP's processor is `CLIPImageProcessor`'s
//! defaults (224 px), SmolVLM's is read from `MODEL_DIR` when given. Prints milliseconds a photo
//! (the best of `--repeat` passes over the list) in a Markdown table the peer also prints.

mod args;
mod timing;

use std::path::PathBuf;

use args::{arguments, positive};
use rayon::prelude::*;
use timing::best_of;
use vitrine_udfs::clip::config::ProcessorConfig;
use vitrine_udfs::clip::preprocess::ImageProcessor;
use vitrine_udfs::image::decode::decode_rgb;
use vitrine_udfs::runtime::source::Hub;
use vitrine_udfs::smolvlm::model::{SmolVlm, SMOLVLM_FILES};

const USAGE: &str = "usage: image_prep IMAGES_TXT [--images N] [--smolvlm MODEL_DIR] [--repeat R]";

fn main() -> Result<(), String> {
    let mut args = arguments();
    let (mut list, mut smolvlm, mut repeat, mut count) = (None, None, 3, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smolvlm" => smolvlm = Some(args.next().ok_or("--smolvlm takes a folder")?),
            "--repeat" => repeat = positive(args.next(), "--repeat")?,
            "--images" => count = Some(positive(args.next(), "--images")?),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => list = Some(PathBuf::from(path)),
        }
    }
    let list = list.ok_or(USAGE)?;
    let photos: Vec<String> = std::fs::read_to_string(&list)
        .map_err(|e| format!("{}: {e}", list.display()))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let count = count.unwrap_or(photos.len());
    let photos: Vec<String> = photos.into_iter().cycle().take(count).collect();
    let files: Vec<Vec<u8>> = photos
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{p}: {e}")))
        .collect::<Result<_, _>>()?;
    let decoded = files
        .iter()
        .map(|bytes| decode_rgb(bytes).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let clip = ImageProcessor::new(&ProcessorConfig::default()).map_err(|e| e.to_string())?;
    let per_photo = |seconds: f64| 1e3 * seconds / photos.len() as f64;
    let (width, height) = decoded[0].dimensions();
    println!(
        "vitrine: {} photos ({width}×{height} the first), {} threads",
        photos.len(),
        rayon::current_num_threads()
    );
    println!("| step | ms a photo |");
    println!("|---|---:|");
    let decode = best_of(repeat, || {
        for bytes in &files {
            decode_rgb(bytes).map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    })?;
    println!("| decode (one thread) | {:.2} |", per_photo(decode));
    // Milliseconds a photo of `process` over every decoded photo on this thread.
    let each_photo = |process: &dyn Fn(&image::RgbImage)| -> Result<f64, String> {
        let seconds = best_of(repeat, || {
            decoded.iter().for_each(process);
            Ok::<_, String>(())
        })?;
        Ok(per_photo(seconds))
    };
    let clip_ms = each_photo(&|rgb| {
        std::hint::black_box(clip.pixel_values(rgb));
    })?;
    println!("| CLIP processor (one thread) | {clip_ms:.2} |");
    if let Some(dir) = smolvlm {
        let source = Hub::new("/nonexistent", true)
            .locate(&dir, SMOLVLM_FILES)
            .map_err(|e| e.to_string())?;
        let (_, processor, _) = SmolVlm::read_parts(&source).map_err(|e| e.to_string())?;
        let smolvlm_ms = each_photo(&|rgb| {
            std::hint::black_box(processor.process(rgb));
        })?;
        println!(
            "| SmolVLM processor, {} frame(s) (one thread) | {smolvlm_ms:.2} |",
            processor.process(&decoded[0]).frames.len(),
        );
    }
    let all_cores = best_of(repeat, || {
        files.par_iter().try_for_each(|bytes| {
            let rgb = decode_rgb(bytes).map_err(|e| e.to_string())?;
            std::hint::black_box(clip.pixel_values(&rgb));
            Ok::<_, String>(())
        })
    })?;
    println!(
        "| CLIP decode + processor (every core; photos/s) | {:.2} ({:.0}/s) |",
        per_photo(all_cores),
        photos.len() as f64 / all_cores
    );
    Ok(())
}
