"""`hub-llava push {dataset,model,results}`: publish a staged dataset, a checkpoint or an evaluation run.

The token comes from `HF_TOKEN` or `hf auth login`; there is deliberately no `--token` flag (it would end up in shell
history and process listings).
"""

import argparse
import sys


def add_parser(subparsers):
    parser = subparsers.add_parser("push", help="Publish a staged dataset, a checkpoint or evaluation results.")
    kinds = parser.add_subparsers(dest="kind", required=True)
    dataset = kinds.add_parser("dataset", help="Push a staged dataset folder (parquet + README with configs).")
    dataset.add_argument("folder", help="The staged repo folder, e.g. outputs/datasets/lvis_instruct4v/repo.")
    model = kinds.add_parser("model", help="Push a checkpoint folder (safetensors + processor + model card).")
    model.add_argument("folder", help="The checkpoint folder written by training or conversion.")
    results = kinds.add_parser("results", help="Push results.json: model-index, .eval_results/ and details dataset.")
    results.add_argument("folder", metavar="results_json", help="The results.json written by `hub-llava eval`.")
    results.add_argument("--details_repo_id", help="Details dataset repo; defaults to <namespace>/details_<model>.")
    results.add_argument("--model_card", help="Merge into this local README.md instead of the model repo's card.")
    results.add_argument("--staging_dir", help="Where to stage the repos; defaults to <results folder>/hub_staging.")
    results.add_argument("--allow_partial", action="store_true", help="Publish --limit results, labelled as partial.")
    for sub in (dataset, model, results):
        sub.add_argument("repo_id", help="Target repo, '<namespace>/<name>' (the model repo for results).")
        sub.add_argument("--private", action="store_true", help="Create the repo(s) private.")
        sub.add_argument("--revision", help="Branch to push to (created if missing); default main.")
        sub.add_argument("--create_pr", action="store_true", help="Open a pull request instead of committing to main.")
        sub.add_argument("--commit_message", help="Commit message.")
        sub.add_argument("--dry_run", action="store_true", help="Check and list what would be pushed; no upload.")
        sub.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from hub_llava import hub  # huggingface_hub and datasets load only when the command runs
    from hub_llava.hub_checks import HubCheckError

    common = {
        "private": args.private,
        "revision": args.revision,
        "create_pr": args.create_pr,
        "dry_run": args.dry_run,
        "commit_message": args.commit_message,
    }
    try:
        if args.kind == "dataset":
            push = hub.push_dataset(args.folder, args.repo_id, **common)
        elif args.kind == "model":
            push = hub.push_model(args.folder, args.repo_id, **common)
        else:
            push = hub.push_results(
                args.folder,
                args.repo_id,
                details_repo_id=args.details_repo_id,
                model_card=args.model_card,
                staging_dir=args.staging_dir,
                allow_partial=args.allow_partial,
                **common,
            )
    except (HubCheckError, hub.PushError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(push.describe())
        print("\ndry run: nothing was pushed.")
    else:
        for done in (push, *push.extra):
            print(f"pushed {done.repo_type} {done.repo_id}: {done.url}")
    return 0
