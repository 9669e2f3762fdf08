"""`hub-llava convert SRC OUT`: an original LLaVA checkpoint -> a `from_pretrained`-ready folder (and the Hub)."""

import argparse
import logging
import sys

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="Convert an original LLaVA checkpoint (full, LoRA or stage-1 projector) to LlavaForConditionalGeneration.",
    )
    parser.add_argument("src", help="Local folder or Hub id of the original checkpoint.")
    parser.add_argument("output_dir", help="Folder to write the converted model, processor and card to.")
    parser.add_argument("--base", help="Base Vicuna (folder or Hub id) for LoRA and stage-1 checkpoints.")
    parser.add_argument("--vision_tower", help="CLIP folder or Hub id; defaults to the checkpoint's mm_vision_tower.")
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float16", "float32"],
        help="Dtype of the saved weights (default: the source checkpoint's torch_dtype; float16 if it names none).",
    )
    parser.add_argument(
        "--source_id", help="Hub id of SRC when SRC is a local copy (for the card's published results)."
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="Compare with an independent float32 forward over the original weights (needs ~5 bytes of RAM per "
        "parameter: the reference and the converted model are loaded one after the other).",
    )
    parser.add_argument("--push_to_hub", action="store_true", help="Push the converted folder to --repo_id.")
    parser.add_argument("--repo_id", help="Hub repo to push to (with --push_to_hub).")
    parser.add_argument("--private", action="store_true", help="Create the Hub repo as private.")
    parser.set_defaults(func=main)
    return parser


def main(args) -> int:
    if args.push_to_hub and not args.repo_id:
        raise ValueError("--push_to_hub needs --repo_id.")
    from hub_llava.convert.converter import convert_checkpoint  # torch loads only when the command runs

    output_dir, report = convert_checkpoint(
        args.src,
        args.output_dir,
        base=args.base,
        vision_tower=args.vision_tower,
        dtype=args.dtype,
        source_id=args.source_id,
        verify=args.verify,
        repo_id=args.repo_id,
    )
    print(f"Converted {args.src} -> {output_dir}")
    if report is not None:
        print(f"max |logit difference|: {report.max_logit_diff:.3e} (tolerance {report.atol:.0e})")
        print(f"max |pixel difference|: {report.max_pixel_diff:.3e}")
        print(f"prompt tokens as LLaVA's tokenizer_image_token: {'yes' if report.tokens_match else 'NO'}")
        if not report.ok:
            print("VERIFY FAILED: the converted model does not match the original.")
            return 1
    if args.push_to_hub:
        from hub_llava.hub import PushError, push_model
        from hub_llava.hub_checks import HubCheckError

        try:
            push = push_model(output_dir, args.repo_id, private=args.private)
        except (HubCheckError, PushError) as err:
            print(f"error: {err} (the converted model is in {output_dir})", file=sys.stderr)
            return 1
        print(push.describe())
    return 0
