"""Opens the index that `vitrine bench vectors DIR` built with the Python `pylance` package and
checks that its nearest-neighbour query returns the same top-10 as Vitrine's `vector_search`.

    pip install pylance numpy
    python3 benches/peers/pylance_check.py DIR [QUERIES]

For the first QUERIES queries (default 50): pylance's ANN search on the index dataset with the
index's own parameters (nprobes, ef, refine_factor from vitrine.json), Vitrine's answer from
vitrine.json, and numpy's exact top-10; prints how many top-10 lists are identical and the
recall of each against exact search. Exits non-zero when pylance and Vitrine disagree.
"""

import json
import os
import sys

import lance
import numpy as np


def main():
    bench_dir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    info = json.load(open(os.path.join(bench_dir, "vitrine.json")))
    d = info["dimension"]
    queries = np.fromfile(os.path.join(bench_dir, "queries.f32"), dtype="<f4").reshape(-1, d)[:n]
    base = np.fromfile(os.path.join(bench_dir, "base.f32"), dtype="<f4").reshape(-1, d)
    params = dict(p.split("=") for p in info["parameters"].split(", ") if "=" in p)
    ds = lance.dataset(info["index"])
    indices = ds.describe_indices() if hasattr(ds, "describe_indices") else ds.list_indices()
    print(f"pylance {lance.__version__}: {ds.count_rows()} rows, version {ds.version}, indices {indices}")
    same = pylance_hits = vitrine_hits = 0
    for i, q in enumerate(queries):
        nearest = {"column": "embedding", "q": q, "k": 10, "nprobes": int(params["nprobes"])}
        if "ef" in params:
            nearest["ef"] = int(params["ef"])
        if "refine_factor" in params:
            nearest["refine_factor"] = int(params["refine_factor"])
        got = ds.to_table(nearest=nearest, columns=["id", "_distance"])["id"].to_pylist()
        vitrine = info["top10"][i]
        exact = np.argsort(-(base @ q))[:10].tolist()
        same += got == vitrine
        pylance_hits += len(set(got) & set(exact))
        vitrine_hits += len(set(vitrine) & set(exact))
    print(f"{same}/{n} top-10 lists identical (same ids, same order); recall@10 against exact: "
          f"pylance {pylance_hits / (10 * n):.3f}, Vitrine {vitrine_hits / (10 * n):.3f}")
    sys.exit(0 if same == n else 1)


if __name__ == "__main__":
    main()
