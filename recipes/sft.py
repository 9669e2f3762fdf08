# Copyright 2026 The hub_llava authors. Licensed under the Apache License, Version 2.0.
"""LLaVA-1.5's fine-tuning (and stage-1 pretraining) recipe on TRL's `SFTTrainer`.

Usage (one GPU to many nodes; settings come from the YAML, command-line flags override them):

    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/sft.py \
        --config recipes/llava-1.5-7b/sft/config_lvis_instruct4v_nodetail_mix619k.yaml

CPU smoke run (tiny model, bundled sample data; seconds):

    hub-llava make-tiny-model outputs/tiny-llava
    accelerate launch --multi_gpu --num_processes 2 recipes/sft.py --config recipes/tiny/sft/config_smoke.yaml
"""

import logging
import os
import sys

import datasets
import transformers
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import DatasetMixtureConfig, ScriptArguments, TrlParser

from hub_llava import errors
from hub_llava.hub import push_model
from hub_llava.processing import image_token_count
from hub_llava.training.collator import build_collator
from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.data import filter_trainable, kept_token_counts, load_train_dataset, measure
from hub_llava.training.eval_callback import BenchmarkEvalCallback
from hub_llava.training.lora import base_record
from hub_llava.training.model import freeze, load_model, load_processor, lora_config
from hub_llava.training.outputs import TokenStreamFilesCallback, save_outputs
from hub_llava.training.trainer import LlavaSFTTrainer, resume_point, whole_run_loss

logger = logging.getLogger(__name__)


def main(script_args, training_args, model_args, mixture, recipe=None):
    ###############
    # Setup logging
    ###############
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    # The recipe's own lines (rows kept, resuming, saving) show on the main process unless a log level is chosen;
    # `passive` leaves transformers' and datasets' verbosity as it is.
    ours = logging.INFO if training_args.log_level == "passive" and training_args.should_log else log_level
    for lib_logger in (logger, logging.getLogger("hub_llava")):
        lib_logger.setLevel(ours)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info(f"Model parameters {model_args}")
    logger.info(f"Training parameters {training_args}")
    set_seed(training_args.seed)

    last_checkpoint = None
    if os.path.isdir(training_args.output_dir):
        last_checkpoint = get_last_checkpoint(training_args.output_dir)
    checkpoint = training_args.resume_from_checkpoint or last_checkpoint
    if checkpoint:
        resumed_at, total_steps = resume_point(checkpoint)
        logger.info(
            f"Resuming from {os.path.basename(os.path.normpath(checkpoint))} (step {resumed_at} of {total_steps})"
        )

    ###############################
    # Load the processor and model
    ###############################
    # The processor always carries LLaVA-1.5's template (vicuna_v1 or plain) and padding image processor.
    processor = load_processor(model_args, training_args)
    model = load_model(model_args, processor)
    freeze(model, train_projector_only=training_args.train_projector_only)

    ###########################################
    # Load, check and length-filter the data
    ###########################################
    # Rows with a stray <image> or a missing image stop the run here, naming the row. Rows cut inside the image
    # by max_length (counted after the image tokens), or left with nothing to train on, are dropped and counted.
    dataset, dataset_names = load_train_dataset(script_args, mixture)
    n_image_tokens = image_token_count(processor)  # 576 at 336 px / 14 px patches
    with training_args.main_process_first(desc="measuring rows"):
        stats = measure(
            dataset,
            processor,
            n_image_tokens,
            training_args.max_length,
            training_args.dataset_num_proc,
            require_image=training_args.llava_template == "plain",
        )
    dataset, modality_lengths = filter_trainable(dataset, stats)
    token_counts = kept_token_counts(stats, training_args.max_length)  # for max_tokens_per_batch
    logger.info(f"{len(dataset)} rows to train on ({sum(x > 0 for x in modality_lengths)} with an image)")

    ######################
    # Initialize trainer
    ######################
    # hub_llava publishes once, at the end, through hub_llava.hub (Trainer's own push would upload every checkpoint).
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = LlavaSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        data_collator=build_collator(processor, training_args),
        peft_config=lora_config(model_args),
        modality_lengths=modality_lengths,
        token_counts=token_counts,
        # checkpoints keep tokenizer.model (LLaVA's stream) and, for LoRA, how to rebuild the adapter's base
        callbacks=[
            TokenStreamFilesCallback(
                processor, base_record(model_args, model, processor) if model_args.use_peft else None
            )
        ],
    )
    if training_args.eval_benchmarks:  # benchmark scores at each save; missing benchmark data stops the run here
        trainer.add_callback(BenchmarkEvalCallback(trainer))

    ###############
    # Training loop
    ###############
    logger.info("*** Train ***")
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = train_result.metrics
    if checkpoint:  # the whole run's mean, not only the resumed steps'
        whole = whole_run_loss(trainer.state.log_history, resumed_at, metrics["train_loss"], trainer.state.global_step)
        if whole is None:  # the checkpoint's step was not a logged one: say what the number covers
            logger.warning(
                "train_loss covers the resumed steps only (the checkpoint's step %d was not logged)", resumed_at
            )
            metrics["train_loss_since_resume"] = metrics.pop("train_loss")
        else:
            metrics["train_loss"] = whole
    metrics["train_samples"] = len(dataset)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    ####################################
    # Save model, processor, model card
    ####################################
    logger.info("*** Save model ***")
    model_dir = save_outputs(trainer, model_args, dataset_names, recipe, len(dataset))  # LoRA: + merged/

    #############
    # Push to Hub
    #############
    # hub_llava's publisher: checks the card and checkpoint, uploads safetensors + processor + card, no pickles.
    # A LoRA run with merge_lora publishes its merged model (output_dir/merged), otherwise output_dir.
    if push_to_hub and trainer.accelerator.is_main_process:
        logger.info("Pushing to hub...")
        push_model(
            model_dir,
            training_args.hub_model_id,
            private=bool(training_args.hub_private_repo),
            revision=training_args.hub_revision,
            token=training_args.hub_token,
        )
    # Ends the trackers and the process group: a rank left to exit with gloo's group alive can abort in its teardown
    # ("terminate called without an active exception", seen on 2-process ZeRO-3 CPU runs).
    trainer.end()


def cli(argv: list[str]) -> None:
    # Flags must be spelled out: `--learning_rat 0.001` is refused (the same typo in the YAML is refused too).
    parser = TrlParser((ScriptArguments, LlavaSFTConfig, LlavaModelConfig, DatasetMixtureConfig), allow_abbrev=False)
    script_args, training_args, model_args, mixture = parser.parse_args_and_config(argv)
    recipe = argv[argv.index("--config") + 1] if "--config" in argv else None
    main(script_args, training_args, model_args, mixture, recipe)


if __name__ == "__main__":
    # A user error (a missing dataset, a setting the recipe cannot run with) ends in one `error:` line; `--debug` or
    # HUB_LLAVA_DEBUG=1 shows the traceback.
    sys.exit(errors.run(lambda: cli([a for a in sys.argv[1:] if a != "--debug"]), errors.debug_requested(sys.argv)))
