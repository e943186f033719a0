"""Find published heads: "which heads fit my encoder?" answered by a Hub search on the heads' card metadata.

Head cards (heads/cards.py) carry ``library_name: hf_bridges``, the tags ``hf-bridges`` and ``bridge-head``, one
``hf-bridges-encoder:<id>`` tag per encoder the head was trained or measured on, and the training encoder as
``base_model`` (which the Hub turns into a ``base_model:<id>`` tag). So ``HfApi.list_models(filter=tags)`` does the
matching server-side; the card data then says how each head relates to the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cards import encoder_tag

if TYPE_CHECKING:
    import argparse

    from huggingface_hub import HfApi

HEAD_TAGS = ("hf-bridges", "bridge-head")


@dataclass
class HeadInfo:
    """One published head, as its card describes it."""

    repo_id: str
    trained_on: str | None = None  # the encoder it was trained on (``base_model``)
    measured_on: list = field(default_factory=list)  # encoders its stitching was measured on
    tags: list = field(default_factory=list)
    downloads: int = 0
    likes: int = 0
    last_modified: Any = None
    card_data: dict = field(default_factory=dict)

    def relation(self, encoder: str | None) -> str:
        """``trained`` / ``measured`` / ``-`` for ``encoder``."""
        if encoder and encoder == self.trained_on:
            return "trained"
        return "measured" if encoder and encoder in self.measured_on else "-"


def _info(model) -> HeadInfo:
    card = model.card_data.to_dict() if hasattr(model.card_data, "to_dict") else dict(model.card_data or {})
    meta = card.get("hf_bridges") or {}
    base = card.get("base_model")
    base = base[0] if isinstance(base, list) and base else base
    tags = list(model.tags or [])
    measured = list(
        meta.get("measured_on") or [t[len(encoder_tag("")) :] for t in tags if t.startswith(encoder_tag(""))]
    )
    return HeadInfo(
        repo_id=model.id,
        trained_on=meta.get("trained_on") or base,
        measured_on=sorted(set(measured)),
        tags=tags,
        downloads=model.downloads or 0,
        likes=model.likes or 0,
        last_modified=model.last_modified,
        card_data=card,
    )


def search_heads(
    encoder: str | None = None,
    *,
    api: HfApi | None = None,
    limit: int = 50,
    author: str | None = None,
    search: str | None = None,
    token: str | None = None,
) -> list[HeadInfo]:
    """Published heads, most downloaded first; with ``encoder`` (a Hub id) only those trained or measured on it.

    Two tag queries (the ``hf-bridges-encoder:`` tag, and the Hub's ``base_model:`` tag for heads whose card lists
    no measured encoders), merged by repo id. ``api``: an ``HfApi`` (default: one for ``HF_ENDPOINT``).
    """
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    filters = (
        [[*HEAD_TAGS, encoder_tag(encoder)], [*HEAD_TAGS, f"base_model:{encoder}"]] if encoder else [list(HEAD_TAGS)]
    )
    found: dict[str, HeadInfo] = {}
    for tags in filters:
        for model in api.list_models(
            filter=tags, author=author, search=search, limit=limit, cardData=True, sort="downloads"
        ):
            found.setdefault(model.id, _info(model))
    heads = sorted(found.values(), key=lambda h: (h.relation(encoder) != "trained", -h.downloads, h.repo_id))
    return heads[:limit]


def format_heads(heads: list[HeadInfo], encoder: str | None = None) -> str:
    """A plain-text table for the CLI."""
    if not heads:
        return f"no published heads{f' for {encoder}' if encoder else ''} (tags {', '.join(HEAD_TAGS)})"
    rows = [("repo", "trained on", "measured on", "fit" if encoder else "downloads")]
    for head in heads:
        rows.append(
            (
                head.repo_id,
                head.trained_on or "?",
                ", ".join(head.measured_on) or "-",
                head.relation(encoder) if encoder else str(head.downloads),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def register_search(head_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hf-bridges head search [--encoder ID]`` to the ``head`` command's sub-parsers."""
    from ..commands import at_least

    parser = head_subparsers.add_parser("search", help="list published heads (optionally: that fit an encoder)")
    parser.add_argument("--encoder", help="Hub id of your encoder: heads trained or measured on it")
    parser.add_argument("--author", help="only heads of this user or organisation")
    parser.add_argument("--limit", type=at_least(1), default=50, help="at most this many heads (default 50)")
    parser.add_argument("--json", action="store_true", help="print the heads as JSON")
    parser.add_argument("--token", help="Hub token (default: the stored login / HF_TOKEN)")
    parser.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT)")
    parser.set_defaults(func=run_search)


def run_search(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import os

    from huggingface_hub import HfApi

    from ..modeling.registry import ConfigError

    if args.encoder and os.path.isdir(args.encoder):  # heads are tagged by Hub id: a folder matched nothing
        raise ConfigError(
            f"--encoder {args.encoder} is a folder; heads are found by the Hub id of the encoder it holds "
            "(e.g. --encoder sentence-transformers/all-MiniLM-L6-v2)"
        )

    heads = search_heads(
        args.encoder, api=HfApi(endpoint=args.endpoint, token=args.token), limit=args.limit, author=args.author
    )
    if args.json:
        rows = [{k: v for k, v in dataclasses.asdict(h).items() if k != "card_data"} for h in heads]
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(format_heads(heads, args.encoder))
    return 0
