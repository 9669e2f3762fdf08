"""The training commands of `hub-llava`: `render-sample` and `make-tiny-model`.

Kept apart from the code they run so that `hub-llava <any command>` starts without importing torch, transformers
and TRL: the handlers import their module when called.
"""


def add_parser(subparsers):
    render = subparsers.add_parser(
        "render-sample", help="Print one training row as the trainer sees it (text, trained spans, lengths)."
    )
    render.add_argument("--config", required=True, help="Recipe YAML, as given to recipes/sft.py.")
    render.add_argument("--index", type=int, default=0, help="Row of the training split.")
    render.add_argument("--model_name_or_path", help="Override the recipe's model (only its processor is loaded).")
    render.add_argument(
        "--ids",
        action="store_true",
        help="Print the ids, pieces and labels side by side (LLaVA's stream, image = -200).",
    )
    render.set_defaults(func=_render_sample)

    tiny = subparsers.add_parser("make-tiny-model", help="Write a tiny random Llava checkpoint for smoke runs.")
    tiny.add_argument("output_dir", help="Folder to write the checkpoint and processor to.")
    tiny.add_argument("--seed", type=int, default=0, help="Initialisation seed.")
    tiny.set_defaults(func=_make_tiny_model)
    return render


def _render_sample(args) -> int:
    from hub_llava.training import render_sample

    return render_sample.main(args)


def _make_tiny_model(args) -> int:
    from hub_llava.training import tiny_model

    return tiny_model.main(args)
