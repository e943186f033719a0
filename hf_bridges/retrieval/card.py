"""The model card of an index bridge: both encoders (revision, pooling, normalisation, prompts), how to load it,
its expected retention; metadata from ``heads.cards`` (library tags, one searchable tag per encoder)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelCard, ModelCardData

from ..heads.cards import HEAD_PLACEHOLDER, LIBRARY_TAGS, _hub_id, anchors_sha256, encoder_tag, template_path

if TYPE_CHECKING:
    from ..heads.format import BridgeHead

TEMPLATE = "index_bridge_card.md"  # in model_cards/, as the heads' templates


def index_card(bridge: Any, head: BridgeHead, repo_id: str | None = None) -> ModelCard:
    # bridge: an IndexBridge, typed Any because importing it here (even for type checking) is a bridge <-> card cycle
    old, new = bridge.old, bridge.new
    names = sorted({n for n in (_hub_id(old.get("name_or_path")), _hub_id(new.get("name_or_path"))) if n})
    base = _hub_id(old.get("name_or_path"))  # the index's encoder: what the bridge adapts to
    data = ModelCardData(
        library_name="hf_bridges",
        pipeline_tag="sentence-similarity",
        base_model=base,
        base_model_relation="adapter" if base else None,
        tags=sorted(
            {*LIBRARY_TAGS, "text", "retrieval", "index-bridge", "embedding-migration", *map(encoder_tag, names)}
        ),
        model_name=repo_id.split("/")[-1] if repo_id else "index-bridge",
        hf_bridges={
            "kind": "index-bridge",
            "repo_id": repo_id,
            "old_encoder": old.get("name_or_path"),
            "new_encoder": new.get("name_or_path"),
            "num_pairs": len(head.anchors),
            "anchors": {"sha256": anchors_sha256(head.anchors)},
        },
    )
    return ModelCard.from_template(
        data,
        template_path=str(template_path(TEMPLATE)),
        title=repo_id.split("/")[-1]
        if repo_id
        else f"Index bridge {old.get('name_or_path')} <- {new.get('name_or_path')}",
        repo_id=repo_id or HEAD_PLACEHOLDER,
        old=old,
        new=new,
        num_pairs=len(head.anchors),
        query_map=bridge.query_map.info,
        migrate_map=bridge.migrate_map.info,
        retention={side: est for side, est in bridge.retention.items()},
    )
