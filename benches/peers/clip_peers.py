"""CLIP throughput of transformers + PyTorch, the peer of `vitrine bench clip`.

    pip install torch transformers pillow
    python3 benches/peers/clip_peers.py BENCH_DIR WAREHOUSE [--batch-sizes 1,8,32] [--texts 64] [--images 32]
        [--device cpu|cuda] [--dtype f32|bf16] [--column]

Prepares BENCH_DIR once (both sides then read the same files):
- model/      a random-weight CLIP ViT-B/32 (transformers' default CLIPConfig: text 512 wide,
              12 layers, 77 positions, vocab 49408; vision 768 wide, 12 layers, patch 32, 224 px;
              projection 512), with the fixture tokenizer and CLIP's image processor;
- texts.txt   product descriptions from WAREHOUSE's demo catalog, each 18-22 tokens;
- images.txt  paths of the catalog's first photos.
WAREHOUSE `-` keeps the texts and photos BENCH_DIR already lists (prepared on another machine)
and repeats them up to --texts and --images. Then times transformers on them: tokenizer +
get_text_features, and PIL decoding + the processor (Pillow backend) + get_image_features, per
batch size, best of --repeat runs, with torch using every core (or on the GPU). Prints the
Markdown table `vitrine bench clip BENCH_DIR` (and, on the GPU, the `clip_embed` bench) also prints.
`--column` cuts the texts into batches in the order `clip_text_embed` gives a column's texts on
the CPU (sorted by their token ids, as `clip_embed --column` does), so that both sides embed the
same batches.
"""

import argparse
import csv
import os
import time

import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

try:
    from transformers import CLIPImageProcessorPil
except ImportError:  # transformers before the Pillow and torchvision processors were split
    from transformers import CLIPImageProcessor as CLIPImageProcessorPil

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def prepare(bench_dir, warehouse, n_texts, n_images):
    model_dir = os.path.join(bench_dir, "model")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(os.path.join(REPO, "tests/fixtures/clip/tiny-a"))
    tokenizer.model_max_length = 77
    if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        torch.manual_seed(0)
        eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        config = CLIPConfig(text_config=dict(eos_token_id=eos, pad_token_id=eos,
                                             bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>")))
        CLIPModel(config).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        CLIPImageProcessorPil().save_pretrained(model_dir)
    if warehouse == "-":
        def listed(name, count):
            with open(os.path.join(bench_dir, name)) as f:
                rows = [line for line in f.read().splitlines() if line]
            return [rows[i % len(rows)] for i in range(count or len(rows))]
        return model_dir, listed("texts.txt", n_texts), listed("images.txt", n_images)
    raw = os.path.join(warehouse, "Volumes/main/fashion_demo/raw_data")
    texts = []
    with open(os.path.join(raw, "styles.csv")) as f:
        for row in csv.DictReader(f):
            text = " ".join(row[k] for k in ["productDisplayName", "articleType", "baseColour", "gender", "season", "usage"] if row.get(k))
            if 18 <= len(tokenizer(text)["input_ids"]) <= 22:
                texts.append(text)
            if len(texts) == n_texts:
                break
    images = sorted(os.listdir(os.path.join(raw, "images")))[:n_images]
    with open(os.path.join(bench_dir, "texts.txt"), "w") as f:
        f.write("\n".join(texts) + "\n")
    with open(os.path.join(bench_dir, "images.txt"), "w") as f:
        f.write("\n".join(os.path.join(raw, "images", i) for i in images) + "\n")
    return model_dir, texts, [os.path.join(raw, "images", i) for i in images]


def best_rate(work, rows, repeat):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return rows / best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bench_dir")
    parser.add_argument("warehouse")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    parser.add_argument("--column", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.bench_dir, exist_ok=True)
    model_dir, texts, images = prepare(args.bench_dir, args.warehouse, args.texts, args.images)

    torch.set_num_threads(os.cpu_count())
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model = CLIPModel.from_pretrained(model_dir, dtype=dtype).to(args.device).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    processor = CLIPImageProcessorPil.from_pretrained(model_dir)
    if args.column:
        ids = [tokenizer(text, truncation=True)["input_ids"] for text in texts]
        texts = [texts[i] for i in sorted(range(len(texts)), key=lambda i: ids[i])]

    def fetched(features):
        # The projected features (transformers 5 wraps them in an output object), brought to the
        # host as f32, as Vitrine's functions return them.
        if not torch.is_tensor(features):
            features = features.pooler_output
        return features.float().cpu()

    def embed_texts(batch, texts=texts):
        with torch.inference_mode():
            for i in range(0, len(texts), batch):
                inputs = tokenizer(texts[i:i + batch], padding=True, truncation=True, return_tensors="pt")
                fetched(model.get_text_features(**inputs.to(args.device)))

    def embed_images(batch, images=images):
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                pixels = processor(images=[Image.open(p) for p in images[i:i + batch]], return_tensors="pt")
                fetched(model.get_image_features(pixel_values=pixels["pixel_values"].to(args.device, dtype)))

    embed_texts(1, texts[:1])
    embed_images(1, images[:1])
    print(f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.device} {args.dtype}, {len(texts)} texts, {len(images)} images")
    print("| batch | texts/s | images/s |")
    print("|---:|---:|---:|")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        t = best_rate(lambda: embed_texts(batch), len(texts), args.repeat)
        i = best_rate(lambda: embed_images(batch), len(images), args.repeat)
        print(f"| {batch} | {t:.1f} | {i:.1f} |", flush=True)


if __name__ == "__main__":
    main()
