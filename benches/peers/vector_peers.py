"""FAISS beside `vitrine bench vectors`, on the same vectors.

    pip install faiss-cpu numpy
    vitrine bench vectors DIR --rows 44424          # writes DIR/base.f32, queries.f32, vitrine.json
    python3 benches/peers/vector_peers.py DIR

Reads the vectors and Vitrine's figures, computes the exact top-10 with numpy, then builds FAISS
indexes over the same (unit) vectors with inner product, and sweeps their search breadth:
IndexHNSWFlat (M = 32, efSearch) and IndexIVFFlat (√n lists, nprobe). For each setting it
reports recall@10, p50/p99 latency of single queries issued one after another, and QPS of that
loop (the way `vitrine bench vectors` measures), plus build time; the first setting whose recall
reaches Vitrine's is marked as the matched-recall peer. FAISS uses every core for the build and
one query at a time for the search, like Vitrine's loop.
"""

import json
import os
import sys
import time

import faiss
import numpy as np


def main():
    bench_dir = sys.argv[1]
    info = json.load(open(os.path.join(bench_dir, "vitrine.json")))
    d = info["dimension"]
    base = np.fromfile(os.path.join(bench_dir, "base.f32"), dtype="<f4").reshape(-1, d)
    queries = np.fromfile(os.path.join(bench_dir, "queries.f32"), dtype="<f4").reshape(-1, d)
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    target = info["recall_at_10"]
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {len(base)} x {d}, "
          f"{len(queries)} queries; Vitrine: recall@10 {target:.3f}, p50 {info['p50_ms']:.2f} ms, "
          f"p99 {info['p99_ms']:.2f} ms, {info['qps']:.0f} QPS, build {info['build_s']:.1f} s")

    def sweep(name, index, build_s, knob, values, set_knob):
        matched = False
        for value in values:
            set_knob(value)
            latencies, hits = [], 0
            start = time.perf_counter()
            for q, want in zip(queries, truth):
                t = time.perf_counter()
                _, ids = index.search(q.reshape(1, -1), 10)
                latencies.append((time.perf_counter() - t) * 1000)
                hits += len(set(ids[0]) & set(want))
            qps = len(queries) / (time.perf_counter() - start)
            latencies.sort()
            recall = hits / (10 * len(queries))
            mark = ""
            if not matched and recall >= target:
                mark, matched = " <- matched recall", True
            print(f"| {name} | {knob}={value} | {build_s:.1f} | {recall:.3f} | "
                  f"{latencies[len(latencies) // 2]:.3f} | {latencies[int(0.99 * (len(latencies) - 1))]:.3f} | {qps:.0f} |{mark}",
                  flush=True)

    print("| FAISS index | search | build s | recall@10 | p50 ms | p99 ms | QPS |")
    print("|---|---|---:|---:|---:|---:|---:|")
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 100
    hnsw.add(base)
    build = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    sweep("HNSWFlat M=32", hnsw, build, "efSearch", [10, 16, 32, 64, 128, 256],
          lambda v: setattr(hnsw.hnsw, "efSearch", v))
    faiss.omp_set_num_threads(os.cpu_count())

    lists = max(1, int(len(base) ** 0.5))
    start = time.perf_counter()
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, lists, faiss.METRIC_INNER_PRODUCT)
    ivf.train(base)
    ivf.add(base)
    build = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    sweep(f"IVFFlat {lists} lists", ivf, build, "nprobe", [1, 2, 4, 8, 16, 32, 64],
          lambda v: setattr(ivf, "nprobe", v))


if __name__ == "__main__":
    main()
