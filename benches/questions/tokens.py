"""Generated tokens, wall time and agreement with the ground truth of the two runs of run.sh.

Usage: python3 tokens.py VITRINE WAREHOUSE. Each reply is counted with the tokenizer of the model
that wrote it (the demo models' own byte-level BPE), plus one token for the end of the utterance
that closes every generation; characters are counted too, as a tokenizer-independent measure.
"""
import glob
import json
import subprocess
import sys

from tokenizers import Tokenizer

vitrine, warehouse = sys.argv[1], sys.argv[2]


def tokenizer(model):
    paths = glob.glob(f"{warehouse}/**/{model}/**/tokenizer.json", recursive=True)
    if not paths:
        sys.exit(f"no tokenizer.json for {model} under {warehouse}")
    return Tokenizer.from_file(sorted(paths)[-1])


def rows(table):
    out = subprocess.run(
        [vitrine, "--warehouse", warehouse, "run", "--format", "jsonl", "-e",
         f"""SELECT e.raw_response AS raw, e.extraction_success AS ok,
                    e.material = g.material AS material_ok, e.pattern = g.pattern AS pattern_ok,
                    e.formality = g.formality AS formality_ok,
                    p.master_category = 'Apparel' AS apparel,
                    e.sleeve_length = g.sleeve_length AS sleeve_ok
             FROM main.scratch.{table} q
             JOIN main.fashion_demo.products_ground_truth g ON q.product_id = g.product_id
             JOIN main.fashion_demo.products p ON q.product_id = p.product_id"""],
        capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


for table, model in [("questions_one", "demo_smolvlm"),
                    ("questions_three", "demo_smolvlm_questions")]:
    tok = tokenizer(model)
    found = rows(table)
    replies = [reply for r in found for reply in (r["raw"] or "").split("\n\n")]
    tokens = sum(len(tok.encode(reply, add_special_tokens=False).ids) + 1 for reply in replies)
    chars = sum(len(reply) for reply in replies)
    share = lambda key: sum(1 for r in found if r[key]) / len(found)
    apparel = [r for r in found if r["apparel"]]
    sleeve = sum(1 for r in apparel if r["sleeve_ok"]) / max(1, len(apparel))
    print(f"{table}: {len(found)} photos, {len(replies)} replies, {tokens} generated tokens "
          f"({tokens / len(found):.1f} per photo), {chars / len(found):.1f} characters per photo, "
          f"success {share('ok'):.3f}, material {share('material_ok'):.3f}, "
          f"pattern {share('pattern_ok'):.3f}, formality {share('formality_ok'):.3f}, "
          f"sleeve (apparel, {len(apparel)}) {sleeve:.3f}")
