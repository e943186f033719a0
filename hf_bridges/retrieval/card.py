"""The model card of an index bridge: both encoders (revision, pooling, normalisation, prompts), how to load it,
its expected retention; metadata from ``heads.cards`` (library tags, one searchable tag per encoder)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelCard, ModelCardData

from ..heads.cards import HEAD_PLACEHOLDER, LIBRARY_TAGS, _hub_id, anchors_sha256, encoder_tag

if TYPE_CHECKING:
    from ..heads.format import BridgeHead

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

An **index bridge** made with `hf_bridges`: keep the vector index built with `{{ old.name_or_path }}`, change the
encoder to `{{ new.name_or_path }}`. Queries embedded by the new encoder are mapped into the old index's space
(`encode`), or the stored vectors are moved into the new space (`migrate`), without re-embedding the corpus.

| | old encoder (the index) | new encoder |
|---|---|---|
| model | `{{ old.name_or_path }}` | `{{ new.name_or_path }}` |
| revision | {{ old.revision or "–" }} | {{ new.revision or "–" }} |
| width | {{ old.hidden_size }} | {{ new.hidden_size }} |
| pooling | {{ old.pooling or "–" }} | {{ new.pooling or "–" }} |
| normalised | {{ old.normalize }} | {{ new.normalize }} |
| prompts | {{ old.prompts or "none" }} | {{ new.prompts or "none" }} |

Fitted on {{ num_pairs }} paired texts: query map (new -> old) {{ query_map.map }}{% if query_map.alpha %} (ridge alpha {{ query_map.alpha }}){% endif %}, migrate map (old -> new) {{ migrate_map.map }}.
{% for side, est in retention.items() %}
- Expected retention, {{ side }} side: {{ "%.3f" | format(est.estimate) }} ({{ (100 * est.confidence) | round | int }}% interval {{ "%.3f" | format(est.low) }}-{{ "%.3f" | format(est.high) }}), label-free: {% if est.reference == "new" %}the share of full re-embedding's top hit kept in the top {{ est.k }}{% else %}the bridge's top-{{ est.k }} hits over full re-embedding's, against both encoders' nearest neighbours{% endif %}, cross-fitted on {{ est.n }} held-out paired texts{% if est.corpus %}, each searching {{ est.corpus }} of them{% endif %}.
{% endfor %}

## Use

```python
from hf_bridges.retrieval import IndexBridge

bridge = IndexBridge.from_pretrained("{{ repo_id }}")   # loads {{ new.name_or_path }} on first encode
query_vectors = bridge.encode(["my question"])              # float32, search the old index with them
new_vectors = bridge.migrate(old_vectors, batch_size=65536)  # or move stored vectors into the new space
bridge.gate(0.95)                                            # raises when the expected retention is lower
```

```bash
hf-bridges index inspect {{ repo_id }} --min-retention 0.95   # exit code 3 below the threshold
hf-bridges index migrate {{ repo_id }} old.npy new.npy
```
"""


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
        template_str=TEMPLATE,
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
