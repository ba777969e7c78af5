"""Preparing photos with Pillow and transformers' processors, the peer of the `image_prep` bench.

    pip install torch transformers pillow
    python3 benches/peers/image_prep_peers.py IMAGES_TXT [--images N] [--smolvlm MODEL_DIR] [--repeat 3]

Times, on the photos IMAGES_TXT lists (repeated up to N when given) and one thread: Pillow's decoding (`Image.open` then
`convert("RGB")`, as the processors' `convert_to_rgb` does), CLIP's processor
(`CLIPImageProcessorPil` defaults: 224 px) on the decoded photos, and when MODEL_DIR is given
SmolVLM's (`Idefics3ImageProcessor` from its folder); then decoding and CLIP's processor on every
core (one process per core, as a DataLoader's workers would). Milliseconds a photo, the best of
--repeat passes, in the Markdown table the Rust bench prints.
"""

import argparse
import io
import os
import time
from concurrent.futures import ProcessPoolExecutor

from PIL import Image

try:
    from transformers import CLIPImageProcessorPil
except ImportError:  # transformers before the Pillow and torchvision processors were split
    from transformers import CLIPImageProcessor as CLIPImageProcessorPil


def best_seconds(work, repeat):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def decode(data):
    return Image.open(io.BytesIO(data)).convert("RGB")


_clip = None


def prepare_clip(data):
    global _clip
    if _clip is None:
        _clip = CLIPImageProcessorPil()
    return _clip(images=[decode(data)], return_tensors="np")["pixel_values"].shape


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("images_txt")
    parser.add_argument("--smolvlm")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int)
    args = parser.parse_args()
    with open(args.images_txt) as f:
        paths = [line for line in f.read().splitlines() if line]
    paths = [paths[i % len(paths)] for i in range(args.images or len(paths))]
    files = []
    for path in paths:
        with open(path, "rb") as f:
            files.append(f.read())
    decoded = [decode(data) for data in files]
    per_photo = lambda seconds: 1e3 * seconds / len(files)
    cores = os.cpu_count()
    import transformers

    print(f"transformers {transformers.__version__}, Pillow {Image.__version__}: {len(files)} photos "
          f"({decoded[0].width}×{decoded[0].height} the first), {cores} processes")
    print("| step | ms a photo |")
    print("|---|---:|")
    seconds = best_seconds(lambda: [decode(data) for data in files], args.repeat)
    print(f"| decode (one thread) | {per_photo(seconds):.2f} |")
    clip = CLIPImageProcessorPil()
    seconds = best_seconds(lambda: [clip(images=[rgb], return_tensors="np") for rgb in decoded], args.repeat)
    print(f"| CLIP processor (one thread) | {per_photo(seconds):.2f} |")
    if args.smolvlm:
        from transformers import AutoImageProcessor

        smolvlm = AutoImageProcessor.from_pretrained(args.smolvlm)
        frames = smolvlm(images=[[decoded[0]]], return_tensors="np")["pixel_values"].shape[1]
        seconds = best_seconds(lambda: [smolvlm(images=[[rgb]], return_tensors="np") for rgb in decoded],
                               args.repeat)
        print(f"| SmolVLM processor, {frames} frame(s) (one thread) | {per_photo(seconds):.2f} |")
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(prepare_clip, files[:cores]))  # each worker makes its processor once
        seconds = best_seconds(lambda: list(pool.map(prepare_clip, files, chunksize=4)), args.repeat)
    print(f"| CLIP decode + processor (every core; photos/s) | {per_photo(seconds):.2f} "
          f"({len(files) / seconds:.0f}/s) |")


if __name__ == "__main__":
    main()
