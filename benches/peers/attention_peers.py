"""Attention alone in PyTorch, the peer of the `attention` bench (`cargo bench -p vitrine-udfs
--bench attention`): `torch.nn.functional.scaled_dot_product_attention` on the same shapes, f32,
with torch using every core.

    pip install torch
    python3 benches/peers/attention_peers.py [--batch-sizes 1,8] [--repeat 5]

The cases are the bench's (see its header): `vision` (12 heads of 64, 1,024 patches), `prefill`
(9 query heads sharing 3 key heads, 754 tokens, causal), `decode` (one query against 818 keys).
Each runs once to warm up, then --repeat times; the best is printed as milliseconds and GFLOP/s
(every key counted, as the bench counts them) in the bench's Markdown table.
"""

import argparse
import time

import torch

CASES = [
    # name, heads, key heads, queries, keys, head size, causal
    ("vision", 12, 12, 1024, 1024, 64, False),
    ("prefill", 9, 3, 754, 754, 64, True),
    ("decode", 9, 3, 1, 818, 64, False),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__} scaled_dot_product_attention on cpu f32, {torch.get_num_threads()} threads")
    print("| case | batch | ms | GFLOP/s |\n|---|---|---|---|")
    for name, heads, key_heads, queries, keys, size, causal in CASES:
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            q = torch.randn(batch, heads, queries, size)
            k = torch.randn(batch, key_heads, keys, size)
            v = torch.randn(batch, key_heads, keys, size)

            def run():
                with torch.inference_mode():
                    torch.nn.functional.scaled_dot_product_attention(
                        q, k, v, is_causal=causal, enable_gqa=key_heads != heads)

            run()
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            flops = 4 * batch * heads * queries * keys * size
            print(f"| {name} | {batch} | {best * 1e3:.2f} | {flops / best / 1e9:.1f} |")


if __name__ == "__main__":
    main()
