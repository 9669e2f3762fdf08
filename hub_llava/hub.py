"""The one place that publishes to the Hugging Face Hub: datasets, checkpoints and evaluation results.

Every push publishes a folder that IS the repo content (a staged dataset: parquet shards + README with `configs:`; a
checkpoint: safetensors + processor + model card). `dry_run=True` checks and lists it without touching the network.

A push goes in this order, so that nothing half-published looks complete:

1. local checks (repo id, card metadata as the Hub validates it, `configs` <-> staged files, parquet footers), then
   the Hub's own YAML validation of the card: a card the Hub would reject fails before any data is sent;
2. `create_repo(exist_ok=True)` (and the branch, for `revision`);
3. every file except `README.md`, with `upload_folder`: resumable (re-running skips the files already committed, the
   Hub reports their oid; with `hf_xet`, chunks already sent are deduplicated). Remote data files that are no longer
   staged are deleted in the same commit(s), so an old shard can never be caught by a config's glob;
4. `README.md` alone, last, in its own commit (the Hub validates its metadata again).

A push interrupted before step 4 leaves data without the new card (no `configs`, or the previous card): it does not
look complete, and re-running finishes it without re-sending what was committed. A single commit would be atomic
too, but `upload_folder` splits large folders into several commits (the `hf_xet` pipeline commits 256 files at a
time), and the README could land in the first of them.

The token comes from `token=`, `HF_TOKEN` or `hf auth login` (`huggingface_hub.get_token()`); it is passed to
`HfApi` and never logged, printed or written.
"""

import logging
import re
import shutil
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx2
import yaml
from huggingface_hub import (
    CommitOperationAdd,
    EvalResult,
    EvalResultEntry,
    HfApi,
    constants,
    eval_result_entries_to_yaml,
    get_token,
)
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from hub_llava.errors import UserError
from hub_llava.hub_checks import (
    HubCheckError,
    check_card,
    check_checkpoint,
    check_data_files_present,
    check_parquet_files,
    check_repo_id,
    staged_files,
    warn_unreferenced,
)
from hub_llava.hub_results import details_repo_id as default_details_repo_id
from hub_llava.hub_results import load_results, merge_model_index, stage_details

logger = logging.getLogger(__name__)

QUICK_START_ID = re.compile(r'^model_id = "[^"\n]*"$', re.M)  # the model card's quick start (model_card.md.jinja)
# Training leftovers that never belong in a published model repo (pickles, optimizer states, intermediate checkpoints).
MODEL_EXCLUDE = [
    "checkpoint-*",
    "benchmark_eval/*",  # answers of the benchmarks run during training (hub_llava.training.eval_callback)
    "runs/*",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    "trainer_state.json",
    ".ipynb_checkpoints/*",
    "merged/*",  # a LoRA run's merged model, published on its own (`hub-llava push model OUTPUT_DIR/merged`)
]
DATASET_EXCLUDE = [".ipynb_checkpoints/*", "*.lock"]


class PushError(UserError, RuntimeError):
    """Raised when the Hub refuses a push; the message says why and what to do."""


@dataclass
class Push:
    """What a push sends (or sent): the repo, the staged folder, its files and the card.

    `url` is the URL of the card's commit (or of the pull request), `None` for a dry run.
    """

    repo_id: str
    repo_type: str
    folder: Path
    files: list[str]
    card: str
    url: str | None = None
    extra: list["Push"] = field(default_factory=list)

    def describe(self) -> str:
        """A human-readable listing: the target, every file with its size, then the card."""
        sizes = [(self.folder / file).stat().st_size for file in self.files]
        lines = [
            f"{self.repo_type} repo {self.repo_id} <- {self.folder} ({len(self.files)} files, {sum(sizes):,} bytes)"
        ]
        lines += [f"  {file}  ({size:,} bytes)" for file, size in zip(self.files, sizes)]
        lines += ["", "README.md:", self.card]
        return "\n".join([*lines, *(other.describe() for other in self.extra)])


def push_dataset(
    staged_repo_dir,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    dry_run: bool = False,
    commit_message: str | None = None,
) -> Push:
    """Publishes a staged dataset folder (parquet shards + `README.md` with `configs:`) as a Hub dataset repo.

    Args:
        staged_repo_dir (`str` or `Path`):
            The folder holding exactly the repo content, as written by the staging step.
        repo_id (`str`):
            `"<namespace>/<name>"`, e.g. `"hub_llava/lvis_instruct4v"`.
        private (`bool`, *optional*, defaults to `False`):
            Create the repo private (ignored if it exists).
        revision (`str`, *optional*):
            Branch to push to (created if missing); defaults to `main`.
        create_pr (`bool`, *optional*, defaults to `False`):
            Open a pull request against `main` instead of committing to it.
        token (`str`, *optional*):
            A write token; defaults to `HF_TOKEN` or the one saved by `hf auth login`.
        dry_run (`bool`, *optional*, defaults to `False`):
            Run the local checks and return what would be pushed, without any network call.
        commit_message (`str`, *optional*):
            Defaults to `"Upload dataset <name> with hub_llava"`.

    Returns:
        [`Push`]: the repo, files and card (call `describe()` for a listing) and the commit or PR URL.
    """
    folder = Path(staged_repo_dir)
    files = staged_files(folder, exclude=DATASET_EXCLUDE)
    card = _read_card(folder, files)
    metadata = check_card(card, str(folder / "README.md"), "dataset")
    if "configs" not in metadata:
        raise HubCheckError(f"{folder / 'README.md'}: no `configs:` in the card metadata; stage the dataset first.")
    check_data_files_present(metadata["configs"], files, str(folder / "README.md"))
    check_parquet_files(folder, files)
    warn_unreferenced(metadata["configs"], files, folder)
    push = Push(repo_id, "dataset", folder, files, card)
    message = commit_message or f"Upload dataset {repo_id.split('/')[-1]} with hub_llava"
    return _publish(push, private, revision, create_pr, token, dry_run, message, ["*.parquet"], DATASET_EXCLUDE)


def push_model(
    checkpoint_dir,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    dry_run: bool = False,
    commit_message: str | None = None,
) -> Push:
    """Publishes a checkpoint folder (safetensors + config + processor + `README.md` model card) as a Hub model repo.

    Intermediate `checkpoint-*` folders, optimizer states and pickled files (`*.bin`, `*.pt`) are left out. Arguments
    as in [`push_dataset`]; `checkpoint_dir` is the folder written by `save_pretrained` (model and processor) plus
    the card from `hub_llava.model_card.render_model_card`.
    """
    folder = Path(checkpoint_dir)
    files = staged_files(folder, exclude=MODEL_EXCLUDE)
    # The card's quick start names the repo the model is pushed to (it was written naming the local folder).
    card = QUICK_START_ID.sub(f'model_id = "{repo_id}"', _read_card(folder, files), count=1)
    check_card(card, str(folder / "README.md"), "model")
    check_checkpoint(folder, files)
    push = Push(repo_id, "model", folder, files, card)
    message = commit_message or f"Upload {repo_id.split('/')[-1]} with hub_llava"
    delete = ["*.safetensors", "*.safetensors.index.json"]
    return _publish(push, private, revision, create_pr, token, dry_run, message, delete, MODEL_EXCLUDE)


def push_results(
    results_json,
    repo_id: str,
    *,
    details_repo_id: str | None = None,
    model_card=None,
    staging_dir=None,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    dry_run: bool = False,
    commit_message: str | None = None,
    allow_partial: bool = False,
    eval_results: list[EvalResult] | None = None,
    eval_result_entries: dict[str, list[EvalResultEntry]] | None = None,
) -> Push:
    """Publishes an evaluation run: its details dataset, then the model repo's card and `.eval_results/`.

    1. the details dataset `<namespace>/details_<model_name>` (see `hub_llava.hub_results`), earlier runs kept;
    2. the model repo: `.eval_results/<benchmark>.yaml`, then `README.md` with the run's results merged into its
       `model-index` (entries of the same benchmark, metric and source replaced; the authors' published ones kept).

    Args:
        results_json (`str` or `Path`):
            The `results.json` of `hub-llava eval`, with `<benchmark>/details.jsonl` beside it.
        repo_id (`str`):
            The model repo the results belong to (it must hold the model card, unless `model_card` is given).
        details_repo_id (`str`, *optional*):
            Defaults to `<namespace of repo_id>/details_<model_name>`.
        model_card (`str` or `Path`, *optional*):
            A local `README.md` to merge into instead of the model repo's current card (offline dry runs).
        staging_dir (`str` or `Path`, *optional*):
            Where both repo folders are staged (`model/`, `details/`); defaults to `<results folder>/hub_staging`.
        private, revision, create_pr, token, dry_run, commit_message:
            As in [`push_dataset`]; `revision` applies to the model repo. A dry run reads the model's card from the
            Hub (unless `model_card` is given) but writes nothing, and its details dataset shows this run only.
        allow_partial (`bool`, *optional*, defaults to `False`):
            Publish benchmarks evaluated on part of their questions (`--limit`); they are refused otherwise, and
            labelled "partial: N of M questions" in the model-index, `.eval_results/` and the details card.
        eval_results (`list[EvalResult]`, *optional*):
            The run's model-index entries; defaults to `hub_llava.eval.results.to_eval_results(results)`,
            attributed to the details dataset.
        eval_result_entries (`dict[str, list[EvalResultEntry]]`, *optional*):
            Benchmark -> its `.eval_results/<benchmark>.yaml` entries; defaults to
            `hub_llava.eval.results.to_eval_result_entries(results)`.

    Returns:
        [`Push`]: the model repo push, with the details dataset push in `extra`.
    """
    results = load_results(results_json)
    check_repo_id(repo_id)
    from hub_llava.eval.results import partial_results

    partial = partial_results(results)
    if partial and not allow_partial:
        listed = "; ".join(f"{key}: {label}" for key, label in partial.items())
        raise HubCheckError(
            f"{results_json} holds results that are not full evaluations ({listed}). Evaluate without --limit, or "
            "pass --allow_partial to publish them labelled as partial."
        )
    details_id = details_repo_id or default_details_repo_id(repo_id, results["model_name"])
    check_repo_id(details_id)
    staging = Path(staging_dir or Path(results_json).parent / "hub_staging")
    previous = None if dry_run else _previous_runs(details_id, staging / "previous", token)
    details_dir = stage_details(results_json, details_id, staging / "details", previous, model_repo_id=repo_id)
    card = _current_card(repo_id, revision, model_card, token, dry_run)
    if eval_results is None or eval_result_entries is None:
        from hub_llava.eval import results as eval_results_module  # the eval stack, only when needed

        # Measured results are attributed to their per-sample evidence: the details dataset.
        source = {
            "source_name": f"hub_llava evaluation ({details_id})",
            "source_url": f"{constants.ENDPOINT}/datasets/{details_id}",
        }
        if eval_results is None:
            eval_results = eval_results_module.to_eval_results(results, **source)
        if eval_result_entries is None:
            eval_result_entries = eval_results_module.to_eval_result_entries(results, **source)
    model_dir = _stage_model_results(results, card, eval_results, eval_result_entries, staging / "model")
    message = commit_message or f"Evaluation results of {results['model_name']} ({results['date']})"
    details = push_dataset(
        details_dir, details_id, private=private, create_pr=create_pr, token=token, dry_run=dry_run,
        commit_message=message,
    )  # fmt: skip
    files = staged_files(model_dir)
    check_card((model_dir / "README.md").read_text(encoding="utf-8"), str(model_dir / "README.md"), "model")
    push = Push(repo_id, "model", model_dir, files, (model_dir / "README.md").read_text(encoding="utf-8"))
    push = _publish(push, private, revision, create_pr, token, dry_run, message, None, [])
    push.extra.append(details)
    return push


def _previous_runs(details_id: str, folder: Path, token: str | None) -> Path | None:
    """Downloads the files of earlier runs from the details dataset, if it exists (they stay in the new version)."""
    api = HfApi(token=_resolve_token(token))
    with _hub_errors(details_id, "dataset"):
        if not api.repo_exists(details_id, repo_type="dataset"):
            return None
        shutil.rmtree(folder, ignore_errors=True)
        api.snapshot_download(
            details_id,
            repo_type="dataset",
            local_dir=folder,
            allow_patterns=["*/details_*.parquet", "results_*.parquet"],
        )
    return folder


def _current_card(repo_id: str, revision: str | None, model_card, token: str | None, dry_run: bool = False) -> str:
    if model_card is not None:
        return Path(model_card).read_text(encoding="utf-8")
    if dry_run and not hub_reachable():
        # Offline, a dry run still shows what would be published, merged into a card with no other content.
        logger.warning("The Hub is unreachable: the dry run merges the results into an empty card (use --model_card).")
        return "---\n{}\n---\n"
    api = HfApi(token=token or get_token())
    try:
        with _hub_errors(repo_id, "model"):
            path = api.hf_hub_download(repo_id, "README.md", revision=revision)
    except PushError as err:
        raise PushError(
            f"Cannot read the model card of {repo_id!r} ({err}); push the model first (`hub-llava push model`), "
            "or pass the card with `model_card=` / `--model_card`."
        ) from err
    return Path(path).read_text(encoding="utf-8")


def _stage_model_results(results: dict, card: str, eval_results, eval_result_entries, folder: Path) -> Path:
    """Writes the model repo's new `README.md` (merged model-index) and `.eval_results/<benchmark>.yaml`."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / ".eval_results").mkdir(parents=True)
    merged = merge_model_index(card, eval_results, results["model_name"])
    (folder / "README.md").write_text(merged, encoding="utf-8")
    for benchmark, entries in eval_result_entries.items():
        text = yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True)
        (folder / ".eval_results" / f"{benchmark}.yaml").write_text(text, encoding="utf-8")
    return folder


def _read_card(folder: Path, files: list[str]) -> str:
    if not folder.is_dir():
        raise HubCheckError(f"{folder}: no such folder to push.")
    if "README.md" not in files:
        raise HubCheckError(f"{folder}: no README.md card; every published repo needs its card.")
    return (folder / "README.md").read_text(encoding="utf-8")


def _publish(push, private, revision, create_pr, token, dry_run, message, delete_patterns, exclude) -> Push:
    check_repo_id(push.repo_id)
    if create_pr and revision not in (None, "main"):
        raise HubCheckError(f"create_pr opens a pull request against main; drop revision={revision!r}.")
    if dry_run:
        logger.info(
            "Dry run: %d files for %s repo %s checked, nothing pushed.", len(push.files), push.repo_type, push.repo_id
        )
        return push
    api = HfApi(token=_resolve_token(token))
    with _hub_errors(push.repo_id, push.repo_type):
        # The Hub's own validation of the card (what `create_commit` runs on README commits), before any upload.
        api._validate_yaml(push.card, repo_type=push.repo_type)
        api.create_repo(push.repo_id, repo_type=push.repo_type, private=private, exist_ok=True)
        if revision and not create_pr:
            api.create_branch(push.repo_id, repo_type=push.repo_type, branch=revision, exist_ok=True)
        data = api.upload_folder(
            repo_id=push.repo_id,
            repo_type=push.repo_type,
            folder_path=push.folder,
            revision=revision,
            create_pr=create_pr,
            commit_message=f"{message} (data)",
            ignore_patterns=["README.md", *exclude],
            delete_patterns=delete_patterns,
        )
        # With create_pr, the data commit opened the PR: the card goes to the same PR.
        card_revision = data.pr_revision if data.pr_url else revision
        commit = api.create_commit(
            repo_id=push.repo_id,
            repo_type=push.repo_type,
            operations=[CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=push.card.encode("utf-8"))],
            commit_message=message,
            revision=card_revision,
            create_pr=create_pr and not data.pr_url,
        )
    push.url = data.pr_url or commit.pr_url or commit.commit_url
    logger.info("Pushed %d files to %s %s: %s", len(push.files), push.repo_type, push.repo_id, push.url)
    return push


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub's endpoint opens within `timeout` seconds (huggingface_hub itself retries a
    failed connection for ~25 s before giving up)."""
    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError:
        return False
    return True


def _resolve_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise PushError(
            "No Hugging Face token found: set HF_TOKEN or run `hf auth login` (a token with write access)."
        )
    return token


@contextmanager
def _hub_errors(repo_id: str, repo_type: str):
    """Turns the Hub's refusals into messages that say what to do (never including the token)."""
    where = f"{repo_type} repo {repo_id!r}"
    try:
        yield
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 403:
            raise PushError(
                f"The token has no write access to {where} (403 Forbidden from the Hub). Use a token with the "
                "'write' role, or fine-grained write access to that namespace (https://huggingface.co/settings/tokens)."
            ) from err
        if status == 401 and not isinstance(err, RepositoryNotFoundError):
            raise PushError(f"The Hub rejected the token (401 Unauthorized) for {where}: invalid or expired.") from err
        if isinstance(err, RepositoryNotFoundError):
            raise PushError(f"{where} not found, or the token cannot see it ({status}).") from err
        raise PushError(f"The Hub refused the push to {where}: {err}") from err
    except httpx2.TransportError as err:
        raise PushError(
            f"The push to {where} was interrupted ({type(err).__name__}: {err}). The card is committed last, so the "
            "repo does not look complete; re-run the same command to finish: committed files are skipped."
        ) from err
    except ValueError as err:
        if "Invalid metadata in README.md" not in str(err):
            raise
        raise PushError(f"The Hub rejected the card of {where}: {err}") from err
