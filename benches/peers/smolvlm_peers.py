"""SmolVLM generation throughput of transformers + PyTorch, the peer of the `smolvlm_generate` bench.

    pip install torch transformers pillow
    python3 benches/peers/smolvlm_peers.py prepare BENCH_DIR [--shape 256m|2.2b] [--images 32] [--no-weights]
    cargo bench -p vitrine-udfs --bench smolvlm_generate -- BENCH_DIR      # writes prompt.txt
    python3 benches/peers/smolvlm_peers.py measure BENCH_DIR [--batch-sizes 1,8,32] [--new-tokens 64]
        [--images N] [--repeat 1] [--device cpu|cuda] [--dtype f32|bf16] [--prompt-lookup N]

`prepare` writes, once per folder:
- model/      a random-weight Idefics3ForConditionalGeneration of SmolVLM-256M-Instruct's shape
              (SigLIP 768 wide, 12 layers, 512 px, patch 16; scale factor 4 → 64 tokens per tile;
              Llama 576 wide, 30 layers, 9/3 heads, MLP 1536, vocab 49280) or of SmolVLM-Instruct's
              (2.2B: SigLIP 1152 wide, 27 layers, 384 px, patch 14; scale 3 → 81 tokens; Llama 2048
              wide, 24 layers, 32/32 heads, MLP 8192, vocab 49155), with the fixture tokenizer
              (tests/fixtures/smolvlm/tiny) and an image processor whose longest edge is one tile,
              so each photo is one tile (2.2B's weights are saved in bf16);
- images/     --images synthetic product photos (JPEG, 600×800 and 800×600, seeded), and images.txt.
`finetune` (the peer of the `smolvlm_finetune` bench, which writes prompt.txt and answers.txt)
trains in f32 on the same (photo, prompt, answer) pairs with the loss on the answer's tokens and
torch.optim.AdamW: every weight, or PEFT LoRA adapters on the text model's seven projections
(rank --lora-rank, alpha twice that); one warm-up step, then --steps timed steps.

    python3 benches/peers/smolvlm_peers.py finetune BENCH_DIR [--mode full|lora] [--batch-size 8]
        [--steps 10] [--lora-rank 16] [--device cpu|cuda]

`measure` times PIL decoding + the processor + `generate` (greedy, exactly --new-tokens each,
prompts left-padded) over the same photos and prompt.txt, per batch size, best of --repeat, after
one warm-up, with torch using every core; it prints the table the Rust bench prints.
`--prompt-lookup N` passes `prompt_lookup_num_tokens=N` to `generate` at batch 1 (transformers'
own drafts, which it takes for one sequence only): the peer of Vitrine's drafts on the CPU.
"""

import argparse
import os
import time

import torch
from PIL import Image, ImageDraw
from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor, PreTrainedTokenizerFast

try:  # transformers ≥ 5.20 names the Pillow backend so; earlier releases have one processor
    from transformers import Idefics3ImageProcessorPil as ImageProcessor
except ImportError:
    from transformers import Idefics3ImageProcessor as ImageProcessor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHAPES = {
    "256m": dict(
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    image_size=512, patch_size=16),
        text=dict(vocab_size=49280, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                  num_attention_heads=9, num_key_value_heads=3, rope_parameters={"rope_type": "default",
                                                                                   "rope_theta": 100000.0}),
        scale_factor=4, image_seq_len=64),
    "2.2b": dict(
        vision=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                    image_size=384, patch_size=14),
        text=dict(vocab_size=49155, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                  num_attention_heads=32, num_key_value_heads=32, rope_parameters={"rope_type": "default",
                                                                                     "rope_theta": 273768.0}),
        scale_factor=3, image_seq_len=81),
}


def prepare(bench_dir, shape, n_images, weights=True):
    model_dir = os.path.join(bench_dir, "model")
    spec = SHAPES[shape]
    tok = PreTrainedTokenizerFast.from_pretrained(os.path.join(REPO, "tests/fixtures/smolvlm/tiny"))
    tile = spec["vision"]["image_size"]
    processor = Idefics3Processor(
        ImageProcessor(size={"longest_edge": tile}, max_image_size={"longest_edge": tile}),
        tok, image_seq_len=spec["image_seq_len"])
    processor.save_pretrained(model_dir)
    if weights and not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        torch.manual_seed(0)
        config = Idefics3Config(
            vision_config=dict(spec["vision"], layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh"),
            text_config=dict(spec["text"], rms_norm_eps=1e-5, max_position_embeddings=8192, pad_token_id=0,
                             tie_word_embeddings=False),
            scale_factor=spec["scale_factor"],
            image_token_id=tok.convert_tokens_to_ids("<image>"),
        )
        model = Idefics3ForConditionalGeneration(config)
        model.to(torch.bfloat16 if shape == "2.2b" else torch.float32).save_pretrained(model_dir)
    image_dir = os.path.join(bench_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(n_images):
        size = (600, 800) if i % 2 == 0 else (800, 600)
        colour = tuple(int(c) for c in torch.randint(0, 256, (3,), generator=g))
        image = Image.new("RGB", size, (245, 245, 245))
        draw = ImageDraw.Draw(image)
        w, h = size
        draw.rectangle([w // 5, h // 6, 4 * w // 5, 5 * h // 6], fill=colour)
        for k in range(0, w, 40):
            draw.line([(k, h // 6), (k, 5 * h // 6)], fill=tuple(255 - c for c in colour), width=3)
        path = os.path.join(image_dir, f"photo-{i:03}.jpg")
        image.save(path, quality=90)
        paths.append(path)
    with open(os.path.join(bench_dir, "images.txt"), "w") as f:
        f.write("\n".join(paths) + "\n")


def measure(bench_dir, batch_sizes, new_tokens, n_images, repeat, device, dtype, prompt_lookup=None):
    model_dir = os.path.join(bench_dir, "model")
    torch_dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    started = time.perf_counter()
    model = Idefics3ForConditionalGeneration.from_pretrained(model_dir, dtype=torch_dtype).to(device).eval()
    load_seconds = time.perf_counter() - started
    processor = Idefics3Processor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"
    with open(os.path.join(bench_dir, "prompt.txt")) as f:
        question = f.read()
    prompt = f"<|im_start|>User:<image>{question}<end_of_utterance>\nAssistant:"
    with open(os.path.join(bench_dir, "images.txt")) as f:
        photos = [line for line in f.read().splitlines() if line]

    def run(paths, batch, tokens):
        begin = time.perf_counter()
        for start in range(0, len(paths), batch):
            chunk = paths[start:start + batch]
            images = [[Image.open(p).convert("RGB")] for p in chunk]
            inputs = processor(text=[prompt] * len(chunk), images=images, padding=True,
                               return_tensors="pt").to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(torch_dtype)
            with torch.no_grad():
                # transformers' prompt lookup (exact for greedy decoding) takes one sequence.
                lookup = {"prompt_lookup_num_tokens": prompt_lookup} if prompt_lookup and len(chunk) == 1 else {}
                out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                     **lookup)
            assert out.shape[1] - inputs["input_ids"].shape[1] == tokens
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - begin

    first = processor(text=[prompt], images=[[Image.open(photos[0]).convert("RGB")]], return_tensors="pt")
    print(f"transformers {__import__('transformers').__version__} + torch {torch.__version__} on {device} "
          f"{dtype} ({torch.get_num_threads()} threads): model loaded in {load_seconds:.1f} s; "
          f"{first['pixel_values'].shape[1]} frame(s), {first['input_ids'].shape[1]} prompt tokens, "
          f"{new_tokens} new tokens")
    run(photos[:1], 1, 4)
    print("| batch | images | images/s | new tokens/s |")
    print("|---|---|---|---|")
    for batch in batch_sizes:
        n = -(-(n_images or max(batch, 8)) // batch) * batch
        chosen = [photos[i % len(photos)] for i in range(n)]
        best = min(run(chosen, batch, new_tokens) for _ in range(repeat))
        rate = n / best
        print(f"| {batch} | {n} | {rate:.3f} | {rate * new_tokens:.1f} |", flush=True)


def finetune(bench_dir, mode, batch_size, steps, lora_rank, device):
    model_dir = os.path.join(bench_dir, "model")
    started = time.perf_counter()
    model = Idefics3ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).to(device)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model
        projections = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"
        config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0,
                            target_modules=rf".*text_model\.layers\.\d+\..*\.({projections})")
        model = get_peft_model(model, config)
    model.train()
    load_seconds = time.perf_counter() - started
    processor = Idefics3Processor.from_pretrained(model_dir)
    tokenizer = processor.tokenizer
    end = tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    with open(os.path.join(bench_dir, "prompt.txt")) as f:
        question = f.read()
    prompt = f"<|im_start|>User:<image>{question}<end_of_utterance>\nAssistant:"
    with open(os.path.join(bench_dir, "images.txt")) as f:
        photos = [line for line in f.read().splitlines() if line]
    with open(os.path.join(bench_dir, "answers.txt")) as f:
        answers = f.read().splitlines()
    examples = []
    for photo, answer in zip(photos, answers):
        inputs = processor(text=[prompt], images=[[Image.open(photo).convert("RGB")]], return_tensors="pt")
        prompt_ids = inputs["input_ids"][0].tolist()
        answer_ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [end]
        examples.append((prompt_ids + answer_ids, len(prompt_ids), inputs["pixel_values"][0]))

    def batch_at(s):
        chosen = [examples[(s * batch_size + i) % len(examples)] for i in range(batch_size)]
        longest = max(len(ids) for ids, _, _ in chosen)
        ids = torch.zeros((batch_size, longest), dtype=torch.long)
        labels = torch.full((batch_size, longest), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, longest), dtype=torch.long)
        for r, (row, answer_from, _) in enumerate(chosen):
            ids[r, :len(row)] = torch.tensor(row)
            labels[r, answer_from:len(row)] = torch.tensor(row[answer_from:])
            mask[r, :len(row)] = 1
        pixels = torch.stack([p for _, _, p in chosen])
        return dict(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device),
                    pixel_values=pixels.to(device))

    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4 if mode == "lora" else 1e-5, weight_decay=0.01)

    def step(s):
        loss = model(**batch_at(s)).loss
        value = loss.item()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return value

    first_loss = step(0)
    if device == "cuda":
        torch.cuda.synchronize()
    begin = time.perf_counter()
    last_loss = first_loss
    for s in range(1, steps + 1):
        last_loss = step(s)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - begin
    memory = (f"; torch peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
              if device == "cuda" else "")
    print(f"transformers {__import__('transformers').__version__} + torch {torch.__version__} on {device} f32 "
          f"({torch.get_num_threads()} threads): loaded in {load_seconds:.1f} s; {len(examples[0][0])} tokens "
          f"per example; loss {first_loss:.4f} → {last_loss:.4f}{memory}")
    label = f"lora r{lora_rank}" if mode == "lora" else "full"
    print("| side | mode | trained values | batch | steps | ms per step | examples/s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| transformers | {label} | {sum(p.numel() for p in trained)} | {batch_size} | {steps} | "
          f"{1000 * seconds / steps:.1f} | {steps * batch_size / seconds:.2f} |", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["prepare", "measure", "finetune"])
    parser.add_argument("bench_dir")
    parser.add_argument("--shape", default="256m", choices=sorted(SHAPES))
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    parser.add_argument("--mode", default="full", choices=["full", "lora"], help="finetune: what is trained")
    parser.add_argument("--batch-size", type=int, default=8, help="finetune")
    parser.add_argument("--steps", type=int, default=10, help="finetune: timed steps")
    parser.add_argument("--lora-rank", type=int, default=16, help="finetune")
    parser.add_argument("--prompt-lookup", type=int, default=None,
                        help="measure: drafts a step by transformers' prompt lookup, at batch 1")
    parser.add_argument("--no-weights", action="store_true", help="prepare: the processor and tokenizer only")
    args = parser.parse_args()
    if args.step == "prepare":
        os.makedirs(args.bench_dir, exist_ok=True)
        prepare(args.bench_dir, args.shape, args.images or 32, weights=not args.no_weights)
    elif args.step == "finetune":
        finetune(args.bench_dir, args.mode, args.batch_size, args.steps, args.lora_rank, args.device)
    else:
        measure(args.bench_dir, [int(b) for b in args.batch_sizes.split(",")], args.new_tokens, args.images,
                args.repeat, args.device, args.dtype, args.prompt_lookup)


if __name__ == "__main__":
    main()
