"""Head-only save, push and pull (``save_head`` / ``push_head_to_hub`` / ``hf-bridges head push|pull``); attach is in
``attach.py`` (``from_encoder(head=...)``).

Kept out of ``modeling_bridge.py`` on purpose: that file is shipped to the Hub as remote code, and this one needs
the installed package (huggingface_hub, pyarrow). The model methods import this module when called.
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..modeling.registry import ConfigError, HfBridgesError
from .cards import head_card, retarget_head_card
from .files import check_inside
from .format import (
    CARD_NAME,
    HEAD_CARD_NAME,
    HEAD_FILES,
    BridgeHead,
    HeadFormatError,
    head_from_model,
    interrupted_save_error,
    read_head,
    write_head,
)

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

    from ..modeling.modeling_bridge import BridgePreTrainedModel

PathLike = str | os.PathLike


class HeadAttachError(HfBridgesError, ValueError):
    """A head that cannot be attached to the given encoder; the message names the problem and the fix."""


# -------------------------------------------------------------------------------------------------- save / push
def save_head(
    model: BridgePreTrainedModel,
    save_directory: PathLike,
    *,
    weights_dtype: str = "float32",
    repo_id: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    stitching_results: list[dict[str, Any]] | None = None,
    card: bool = True,
    anchors_in_training: bool | None = None,
) -> Path:
    """Write only the head of ``model`` (weights, raw anchors, config, anchor space, card), atomically.

    ``weights_dtype="float16"`` halves the file (logits then differ from the original by float16 rounding).
    ``anchors_in_training``: whether the head trained on its anchors and alignment set (they were among its
    training rows); the attach-time expected accuracy uses constants fitted on such heads (None: not recorded).
    """
    if anchors_in_training is not None and not isinstance(anchors_in_training, bool):
        raise ConfigError(
            f"save_head: anchors_in_training must be True (the head trained on its anchors and alignment set), False "
            f"or None (not recorded), got {anchors_in_training!r}"
        )
    head = head_from_model(model, weights_dtype)
    accuracy = validation_accuracy(metrics)
    if accuracy is not None:  # the source accuracy of the attach-time estimate
        head.config["validation_accuracy"] = accuracy
    if anchors_in_training is not None:  # which constants the estimate uses (heads/estimate.py)
        head.config["anchors_in_training"] = anchors_in_training
    text = None
    if card:
        text = str(head_card(head, repo_id, dataset, metrics, stitching_results, location=save_directory))
    return write_head(head, save_directory, card=text)


def validation_accuracy(metrics: dict[str, float] | None) -> float | None:
    """The head's validation accuracy in ``metrics``: ``accuracy``, or ``eval_accuracy`` as ``Trainer.evaluate()``
    names it (so ``save_head(dir, metrics=trainer.evaluate())`` stores it)."""
    if not metrics:
        return None
    value = metrics.get("accuracy", metrics.get("eval_accuracy"))
    return None if value is None else float(value)


def push_head_to_hub(model: BridgePreTrainedModel, repo_id: str, **kwargs: Any) -> CommitInfo:
    """Push the head as a Hub model repo (created if needed); returns the ``CommitInfo`` (``.oid`` is the commit).
    ``kwargs``: :func:`push_head_folder`'s (``private``, ``token``, ``revision``, ``commit_message``, ``endpoint``),
    the rest go to :func:`save_head`. Only the head files (and the card) are uploaded, so a head can share a repo
    with a full model."""
    push = inspect.signature(push_head_folder).parameters
    push_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in push and key not in ("folder", "repo_id")}
    with tempfile.TemporaryDirectory(prefix="bridge-head-") as tmp:
        folder = save_head(model, Path(tmp) / "head", repo_id=repo_id, **kwargs)
        return push_head_folder(folder, repo_id, **push_kwargs)


def push_head_folder(
    folder: PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload bridge head",
    endpoint: str | None = None,
) -> CommitInfo:
    """Upload a head folder written by ``save_head`` (checked first, so a broken head is never published)."""
    read_head(folder)
    folder = Path(folder)
    uploads = [name for name in (*HEAD_FILES, CARD_NAME, HEAD_CARD_NAME) if (folder / name).is_file()]
    for name in uploads:  # never publish a file from outside the folder (a README.md -> ~/.cache/.../token)
        check_inside(folder / name, folder, str(folder))
    api = HfApi(endpoint=endpoint, token=token)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status != 401:
            raise
        raise ConfigError(  # was the HTTP client's "Client error '401 Unauthorized' for url ..." with a MDN link
            f"the Hub did not accept the token for pushing to {repo_id} (401: none given, or invalid): log in with "
            "`hf auth login`, set HF_TOKEN, or pass token=... (--token)"
        ) from None
    if private and not api.repo_info(repo_id).private:  # create_repo ignores `private` for a repo that exists
        raise ConfigError(
            f"{repo_id} already exists and is public: private=True (--private) does not change an existing repo, "
            "so nothing was pushed. Make it private in its settings on the Hub first, or push to a new repo"
        )
    if revision and not re.fullmatch(r"[0-9a-f]{40}", revision):  # a commit needs its branch: make a new one
        api.create_branch(repo_id, branch=revision, exist_ok=True)  # (from main), as `--revision BRANCH` means
    operations = [CommitOperationAdd(name, str(folder / name)) for name in HEAD_FILES if name in uploads]
    for card_name in (CARD_NAME, HEAD_CARD_NAME):  # the card names the repo it is pushed to, not a placeholder
        if card_name in uploads:
            card = retarget_head_card(ModelCard.load(Path(folder) / card_name), repo_id)
            operations.append(CommitOperationAdd(card_name, str(card).encode()))
    with warnings.catch_warnings():  # anchors.parquet is data by design (the raw anchors): no "data file?" warning
        warnings.filterwarnings("ignore", message=r"It seems that you are about to commit a data file \(anchors\.")
        return api.create_commit(
            repo_id=repo_id, operations=operations, revision=revision, commit_message=commit_message
        )


# ---------------------------------------------------------------------------------------------------------- pull
REPO_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+$")


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's network errors (huggingface_hub >= 1 downloads with httpx, or its fork httpx2; it has
    already retried them, resuming its ``.incomplete`` file, when one reaches us)."""
    import importlib

    errors = []
    for name in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def pull_head(
    head: PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: PathLike | None = None,
    endpoint: str | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """A local folder holding the head: the folder itself, or a download of the Hub repo (HF cache)."""
    if os.path.isdir(head):
        return Path(head)
    interrupted = interrupted_save_error(Path(head))
    if interrupted is not None:
        raise interrupted
    head = str(head)
    if not REPO_ID.match(head) or head.startswith((".", "~")):
        raise HeadFormatError(f"no head folder at {head}; pass an existing folder or a Hub repo id such as org/name")
    download = {
        "revision": revision,
        "token": token,
        "cache_dir": cache_dir,
        "endpoint": endpoint,
        # config.json too (small): it tells a full bridge model apart from a repo that is no bridge at all
        "allow_patterns": [*HEAD_FILES, CARD_NAME, HEAD_CARD_NAME, "config.json"],
        "force_download": force_download,
        "local_files_only": local_files_only,
    }
    try:
        folder = snapshot_download(head, **download)  # the client retries 5xx / 429 / timeouts itself
    except RepositoryNotFoundError:
        raise HeadFormatError(
            f"no head repo {head!r} on the Hub, or it is private: check the name, or pass token=... "
            "(or run `hf auth login`) for a private repo"
        ) from None
    except RevisionNotFoundError:
        raise HeadFormatError(
            f"the head repo {head!r} has no revision {revision!r} (a branch, tag or commit sha)"
        ) from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        status = _server_status(error)
        if status is not None:  # the Hub answered, with an error: not an offline problem
            raise HeadFormatError(
                f"downloading head {head!r} failed: the Hub answered HTTP {status} ({_server_reason(error)}), "
                f"also on the client's retries; a server error: try again later (`hf-bridges head pull {head}`)"
            ) from None
        raise HeadFormatError(
            f"cannot get head {head!r}{f' at revision {revision}' if revision else ''}: it is not in the local Hugging "
            f"Face cache and the Hub cannot be reached ({type(error).__name__}). Pull it while online "
            "(`hf-bridges head pull ...`), unset HF_HUB_OFFLINE, or pass a local folder"
        ) from None
    except HfHubHTTPError as error:
        status = _server_status(error)
        again = " (also on the client's retries): a server error, try again later" if status and status >= 500 else ""
        raise HeadFormatError(f"downloading head {head!r} failed: {str(error).splitlines()[0]}{again}") from None
    except (requests.RequestException, OSError, *_transport_errors()) as error:  # e.g. the connection dropped mid-file
        raise HeadFormatError(
            f"downloading head {head!r} failed: the connection broke ({type(error).__name__}: {error}). Nothing "
            "partial was kept (the Hub client writes into a .incomplete file); rerun `hf-bridges head pull` to retry"
        ) from None
    return Path(folder)


def _server_status(error: BaseException) -> int | None:
    """The HTTP status of the Hub answer behind ``error`` (the client wraps a failed HEAD in LocalEntryNotFoundError),
    or None when no answer came (offline, connection refused)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        response = getattr(error, "response", None)
        if isinstance(error, HfHubHTTPError) and response is not None:
            return response.status_code
        error = error.__cause__ or error.__context__
    return None


def _server_reason(error: BaseException) -> str:
    while error is not None and not isinstance(error, HfHubHTTPError):
        error = error.__cause__ or error.__context__
    return str(error).splitlines()[0][:120] if error is not None else "no detail"


def load_head(head: PathLike, **pull_kwargs: Any) -> BridgeHead:
    """Pull (if needed) and read a head; never runs code from it."""
    folder = pull_head(head, **pull_kwargs)
    bundle = read_head(folder, source=str(head))
    if not os.path.isdir(head) and folder.parent.name == "snapshots":  # the HF cache: snapshots/<commit sha>
        bundle.revision = folder.name
    return bundle
