"""Prints what `make demo` produced: dataset counts, the two training stages, scores (HF and openai backends, their
comparison), the conversion check, staged repos.

python samples/demo_summary.py outputs
"""

import json
import sys
from pathlib import Path


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def main(out: Path) -> None:
    print(f"\n=== hub_llava demo: everything is under {out}/ ===")
    for name in ("llava_pretrain", "llava_v1_5", "lvis_instruct4v", "svit"):
        report = load(out / "datasets" / name / "build_report.json")
        print(f"\ndataset hub_llava/{name}  (staged repo: {out}/datasets/{name}/repo)")
        for config, c in report["configs"].items():
            rows = ", ".join(f"{split} {n}" for split, n in c["num_rows"].items())
            print(
                f"  {config:20s} read {c['read']:3d} = written {c['written']:3d} + rejected {c['rejected']}  ({rows})"
            )
    stage1 = load(out / "tiny-llava-pretrain" / "all_results.json")
    print(
        f"\nstage 1 (projector only, plain template, staged LCS-558K sample): train_loss {stage1['train_loss']:.3f}, "
        f"{stage1['train_samples']} rows, {stage1['epoch']:.0f} epochs -> {out}/tiny-llava-pretrain"
    )
    train = load(out / "tiny-llava-sft" / "all_results.json")
    print(
        f"stage 2 (from stage 1's projector, 2 processes, gloo): train_loss {train['train_loss']:.3f}, "
        f"{train['train_samples']} rows, {train['epoch']:.0f} epochs -> {out}/tiny-llava-sft"
    )
    sample = load(out / "render_sample.json")
    print(f"  trained spans of one row (render-sample): {sample['trained_spans']}")
    results = load(out / "eval" / "results.json")["results"]
    print("\nevaluation of the tiny model on the bundled sample benchmarks (random weights: scores mean nothing):")
    print("  " + ", ".join(f"{r['name']} {r['score']}" for r in results.values()))
    served = load(out / "eval_openai" / "results.json")
    backend = served["backend"]
    print(
        f"the same benchmarks through the {backend['name']} backend ({backend['concurrency']} requests in flight to "
        f"a local OpenAI-compatible stand-in server): "
        + ", ".join(f"{r['name']} {r['score']}" for r in served["results"].values())
    )
    print("  parity with the hf backend: " + ", ".join(
        f"{key} {p['agreement']}% of {p['n']} identical" for key, p in served["parity"].items()))  # fmt: skip
    table = (out / "compare.md").read_text().strip().replace("\n", "\n  ")
    print(f"hub-llava compare {out}/eval {out}/eval_openai:\n  {table}")
    pope = load(out / "eval" / "pope_llava-v1.5-13b.json")
    print(f"official-equivalent scoring of LLaVA-1.5-13B's real POPE answers: {pope['score']} (published 85.9)")
    check = (out / "convert.log").read_text().strip().replace("\n", "\n  ")
    print(f"\nconversion of an original-layout checkpoint (--verify):\n  {check}")
    print("\nstaged Hub repos (dry runs; `hub-llava push ...` without --dry_run publishes them):")
    for folder in [
        out / "datasets" / "llava_pretrain" / "repo",
        out / "datasets" / "llava_v1_5" / "repo",
        out / "datasets" / "lvis_instruct4v" / "repo",
        out / "datasets" / "svit" / "repo",
        out / "tiny-llava-sft",
        out / "models" / "llava-tiny-hf",
        out / "eval" / "hub_staging" / "model",
        out / "eval" / "hub_staging" / "details",
    ]:
        files = [p for p in folder.rglob("*") if p.is_file()]
        print(f"  {folder}  ({len(files)} files)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs"))
