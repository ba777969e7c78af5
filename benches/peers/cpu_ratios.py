"""Issue 19's CPU comparison in one call: Vitrine's CLIP and SmolVLM benches and their
transformers + PyTorch peers, alternating on this machine, and the ratio of their means at each
batch size.

    pip install torch transformers pillow
    python3 benches/peers/smolvlm_peers.py prepare SMOLVLM_DIR --shape 256m --images 32
    vitrine --warehouse WAREHOUSE demo-data --products 300 --seed 42
    python3 benches/peers/clip_peers.py CLIP_DIR WAREHOUSE --texts 128 --images 32 --batch-sizes 1
    python3 benches/peers/cpu_ratios.py --clip CLIP_DIR --smolvlm SMOLVLM_DIR [--clip-rounds 3]
        [--smolvlm-rounds 2] [--column] [--logs DIR]

The first three commands prepare the folders once (random-weight models of SmolVLM-256M's and
CLIP ViT-B/32's shapes, 32 photos and the demo catalog's texts). This one builds the two benches
(`cargo bench --no-run`, the bench profile, in `CARGO_TARGET_DIR` when set; the build's output
goes to stderr), then runs, each round Vitrine first and the peer after it, f32 on the CPU with
every core:

- CLIP: `clip_embed CLIP_DIR --device cpu --batch-sizes 1,8,32 --texts 128 --images 32 --repeat 2`
  against `clip_peers.py CLIP_DIR - --texts 128 --images 32 --repeat 2` (texts/s and photos/s);
  with `--column` both cut the texts into batches in the order `clip_text_embed` gives a column
  (by token ids), rather than the file's;
- SmolVLM: `smolvlm_generate SMOLVLM_DIR --device cpu --new-tokens 64 --repeat 2` at batch 1 and
  8 over 16 photos, then at 32 over 32, against `smolvlm_peers.py measure` with the same sizes
  (photos/s). Best of two runs on both sides, as for CLIP: a process's first batch of a size
  touches memory no smaller batch had, and a long job pays that once (`benches/RESULTS.md`,
  2026-12-05 from 07:32 UTC).

It prints each model's rates, run by run, with the ratio of Vitrine's mean to the peer's, as the
Markdown tables of `benches/RESULTS.md`; every run's whole output is kept in `--logs` (default
/tmp/cpu-ratios). A rate a run did not print, or a run that fails, stops the script with the
command and its log named. Noisy machines (shared virtual CPUs) move from run to run: compare
rounds taken in one window, as these are.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PEERS = os.path.join(ROOT, "benches", "peers")


def build():
    """The two bench executables, built by cargo in the bench profile: {bench name: path}."""
    command = ["cargo", "bench", "-p", "vitrine-udfs", "--bench", "clip_embed", "--bench",
               "smolvlm_generate", "--locked", "--no-run", "--message-format=json"]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"cpu_ratios: the build failed: {' '.join(command)}")
    executables = {}
    for line in done.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            executables[message["target"]["name"]] = message["executable"]
    missing = {"clip_embed", "smolvlm_generate"} - executables.keys()
    if missing:
        sys.exit(f"cpu_ratios: cargo named no executable for {sorted(missing)}")
    return executables


def processor():
    """The processor's model name as Linux reports it, or what Python knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "an unknown processor"


def table(output):
    """The rates of a bench's Markdown table: {batch: {column header: value}} for the rows whose
    first cell is a batch size, cells read as numbers where they are ("0 %" → 0)."""
    header, rows = None, {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        if cells[0] == "batch":
            header = cells
        elif header and cells[0].isdigit():
            values = {}
            for name, cell in zip(header[1:], cells[1:]):
                try:
                    values[name] = float(cell.split()[0])
                except (ValueError, IndexError):
                    pass
            rows[int(cells[0])] = values
    return rows


class Runs:
    """Runs commands one after another, each one's output kept in its own log file."""

    def __init__(self, logs):
        self.logs = logs
        self.count = 0
        os.makedirs(logs, exist_ok=True)

    def run(self, name, command):
        """The batch-size table that `command` prints (see `table`); exits naming the command
        and its log when the command fails."""
        self.count += 1
        log = os.path.join(self.logs, f"{self.count:02d}-{name}.log")
        started = time.strftime("%H:%M:%S", time.gmtime())
        print(f"{started} UTC {name}: {' '.join(command)}", file=sys.stderr, flush=True)
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        with open(log, "w") as f:
            f.write(done.stdout)
        if done.returncode != 0:
            sys.exit(f"cpu_ratios: {name} failed (exit {done.returncode}); its output: {log}")
        return started, table(done.stdout)


def rate(rows, batch, column, name):
    """One rate of a parsed table; exits when the run did not print it."""
    try:
        return rows[batch][column]
    except KeyError:
        sys.exit(f"cpu_ratios: {name} printed no {column} at batch {batch}")


def report(title, rounds, columns, batches):
    """Prints a Markdown table: a row per batch size, each round's Vitrine and peer rates
    (several columns joined by " | "), then the ratio of the means per column."""
    print(f"\n{title}\n")
    head = "| batch |" + "".join(f" Vitrine ({v}) | transformers ({p}) |" for (v, _), (p, _) in rounds)
    print(head + " ratio of the means |")
    print("|---:|" + "---:|" * (2 * len(rounds) + 1))
    for batch in batches:
        cells, ratios = [], []
        for column in columns:
            ours = [rate(rows, batch, column, "Vitrine") for (_, rows), _ in rounds]
            theirs = [rate(rows, batch, column, "the peer") for _, (_, rows) in rounds]
            ratios.append(f"{(sum(ours) / len(ours)) / (sum(theirs) / len(theirs)):.2f}×")
        for (_, ours), (_, theirs) in rounds:
            for rows in (ours, theirs):
                cells.append(" \\| ".join(f"{rows[batch][c]:g}" for c in columns))
        print(f"| {batch} | " + " | ".join(cells) + " | " + " \\| ".join(ratios) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", help="CLIP_DIR, prepared by clip_peers.py")
    parser.add_argument("--smolvlm", help="SMOLVLM_DIR, prepared by smolvlm_peers.py prepare")
    parser.add_argument("--clip-rounds", type=int, default=3)
    parser.add_argument("--smolvlm-rounds", type=int, default=2)
    parser.add_argument("--column", action="store_true",
                        help="CLIP's texts in the order clip_text_embed gives a column, on both sides")
    parser.add_argument("--logs", default="/tmp/cpu-ratios")
    args = parser.parse_args()
    if not (args.clip or args.smolvlm):
        parser.error("give --clip, --smolvlm or both")
    for folder in filter(None, [args.clip, args.smolvlm]):
        if not os.path.isdir(os.path.join(folder, "model")):
            parser.error(f"{folder} holds no model/: prepare it first (see --help)")

    executables = build()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True).stdout.strip()
    print(f"Vitrine {commit} against transformers + PyTorch, f32, on {os.cpu_count()} cores of "
          f"{processor()}, {time.strftime('%Y-%m-%d', time.gmtime())}")
    runs = Runs(args.logs)
    python = sys.executable

    if args.clip:
        sizes = ["--texts", "128", "--images", "32", "--repeat", "2"] + ["--column"] * args.column
        rounds = []
        for _ in range(args.clip_rounds):
            ours = runs.run("clip-vitrine", [executables["clip_embed"], args.clip, "--device", "cpu",
                                             "--batch-sizes", "1,8,32", *sizes])
            theirs = runs.run("clip-transformers", [python, os.path.join(PEERS, "clip_peers.py"),
                                                    args.clip, "-", *sizes])
            rounds.append((ours, theirs))
        order = ", texts in a column's order" if args.column else ""
        report(f"CLIP ViT-B/32{order}, texts/s | photos/s", rounds, ["texts/s", "images/s"], [1, 8, 32])

    if args.smolvlm:
        parts = [("1,8", "16"), ("32", "32")]
        rounds = []
        for _ in range(args.smolvlm_rounds):
            sides = []
            for name, command in [
                ("smolvlm-vitrine", [executables["smolvlm_generate"], args.smolvlm, "--device", "cpu"]),
                ("smolvlm-transformers", [python, os.path.join(PEERS, "smolvlm_peers.py"), "measure",
                                          args.smolvlm, "--device", "cpu", "--dtype", "f32"]),
            ]:
                started, rows = None, {}
                for batches, images in parts:
                    at, part = runs.run(name, command + ["--batch-sizes", batches, "--images", images,
                                                         "--new-tokens", "64", "--repeat", "2"])
                    started = started or at
                    rows.update(part)
                sides.append((started, rows))
            rounds.append(tuple(sides))
        report("SmolVLM-256M's shape, 64 new tokens, photos/s", rounds, ["images/s"], [1, 8, 32])


if __name__ == "__main__":
    main()
