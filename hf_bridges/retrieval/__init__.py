"""Keep your vector index, change your encoder: an index bridge fitted on unlabelled paired texts.

``IndexBridge.fit(old_encoder, new_encoder, texts)`` -> ``encode(queries)`` (new encoder, mapped into the old
index's space) / ``migrate(old_vectors)`` (stored vectors into the new space), a label-free expected retention with
an interval and a gate, the retention measured on your own labelled queries (``evaluate``), saved and pushed in the
head-only format. See docs/retrieval.md.
"""

from .bridge import IndexBridge, LinearMap
from .encoders import IndexBridgeError, TextEncoder, load_text_encoder
from .estimate import RetentionEstimate, RetentionGateError, cross_fitted_retention
from .evaluate import RetentionMeasurement
from .maps import BlendedMap
from .metrics import retrieval_metrics

__all__ = [
    "BlendedMap",
    "IndexBridge",
    "IndexBridgeError",
    "LinearMap",
    "RetentionEstimate",
    "RetentionGateError",
    "RetentionMeasurement",
    "TextEncoder",
    "cross_fitted_retention",
    "load_text_encoder",
    "retrieval_metrics",
]
