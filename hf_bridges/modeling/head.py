"""The relative product head and every pluggable part it is built from, each a :class:`~.registry.Registry` entry:
projections, absolute transforms fitted on the anchors, subspace norms, aggregations, and the poolings that turn an
encoder's output into one vector. It knows nothing about encoders or files: the full model, the head-only format
and training on cached embeddings share it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .pairwise import l1_distance, linf_distance
from .registry import InputError, Registry, registrar


# -------------------------------------------------------------------------------------------------- input checks
def _all_finite(tensor: torch.Tensor, message: str) -> bool:
    """Eager: whether every value is finite. Under ``torch.compile``: an in-graph assertion (no data-dependent
    branch, so no graph break), then True."""
    if torch.compiler.is_compiling():
        torch._assert_async(torch.isfinite(tensor).all(), message)
        return True
    return bool(torch.isfinite(tensor).all())


def check_anchor_embeddings(anchors: torch.Tensor) -> None:
    if anchors.dim() != 2 or anchors.shape[0] < 2:
        raise InputError(
            f"anchor embeddings must be (num_anchors >= 2, dim), got shape {tuple(anchors.shape)}; "
            "pass at least 2 anchors"
        )
    message = "anchor embeddings contain NaN or inf; check the encoder and the anchor inputs"
    if not _all_finite(anchors, message):
        raise InputError(message)


def check_embeddings(embeddings: torch.Tensor, anchor_dim: int) -> None:
    if embeddings.dim() != 2:
        raise InputError(f"embeddings must be (batch, dim), got shape {tuple(embeddings.shape)}")
    if embeddings.shape[0] == 0:
        raise InputError("empty batch: the head got 0 samples")
    if embeddings.shape[1] != anchor_dim:
        raise InputError(
            f"embedding width {embeddings.shape[1]} differs from the anchors' width {anchor_dim}: the anchors were "
            "embedded by another encoder; call refresh_anchors() or attach the head to this encoder"
        )
    if not _all_finite(embeddings, "the encoder produced NaN or inf embeddings"):
        bad = (~torch.isfinite(embeddings)).any(dim=1).nonzero().flatten().tolist()
        raise InputError(f"the encoder produced NaN or inf embeddings for batch rows {bad[:10]}")


# --------------------------------------------------------------------------------------------------- projections
ProjectionFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Projection:
    name: str
    fn: ProjectionFn
    invariant_to: str


PROJECTIONS: Registry[Projection] = Registry("projection")


def register_projection(name: str, invariant_to: str, **metadata: Any) -> Callable[[ProjectionFn], ProjectionFn]:
    """Decorator: make ``fn(x, anchors) -> (B, k)`` available under ``name`` in every config."""

    def wrap(fn: ProjectionFn) -> ProjectionFn:
        PROJECTIONS.register(name, Projection(name, fn, invariant_to), invariant_to=invariant_to, **metadata)
        return fn

    return wrap


def get_projection(name: str) -> Projection:
    return PROJECTIONS.get(name)


@register_projection("cosine", invariant_to="orthogonal maps (rotations, reflections) and isotropic scaling")
def cosine(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    # F.normalize clamps the norm at eps, so a zero vector gives similarity 0 instead of a division by zero.
    return F.normalize(x, dim=-1) @ F.normalize(anchors, dim=-1).mT


@register_projection("angular", invariant_to="orthogonal maps and isotropic scaling (angle in [0, 1])")
def angular(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    # clamp strictly inside [-1, 1]: arccos has an infinite gradient at the ends.
    return torch.arccos(cosine(x, anchors).clamp(-1 + 1e-7, 1 - 1e-7)) / torch.pi


@register_projection("euclidean", invariant_to="isometries: orthogonal maps and translations")
def euclidean(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    # |x|^2 - 2 x.a + |a|^2 as one GEMM (on par with torch.cdist p=2, which takes the same path for > 25 rows:
    # benchmarks/projections_vs_cdist.py); the clamp keeps the gradient finite where a sample is an anchor.
    squared = (x * x).sum(-1, keepdim=True) - 2 * x @ anchors.mT + (anchors * anchors).sum(-1)
    return squared.clamp_min(1e-12).sqrt()


def _cdist(x: torch.Tensor, anchors: torch.Tensor, p: float) -> torch.Tensor:
    """cdist for what the CPU kernel does not cover (batched inputs, other devices); half precision upcast."""
    dtype = torch.promote_types(x.dtype, anchors.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        return torch.cdist(x.float(), anchors.float(), p=p).to(dtype)
    return torch.cdist(x, anchors, p=p)


def _pairwise_cpu(x: torch.Tensor, anchors: torch.Tensor) -> bool:
    return x.dim() == 2 and anchors.dim() == 2 and x.device.type == "cpu" and anchors.device.type == "cpu"


@register_projection("l1", invariant_to="coordinate permutations with sign flips, and translations")
def l1(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    # CPU: a chunked broadcast kernel (pairwise.py), 3x faster than torch.cdist p=1 in forward, never a (B, k, D)
    # tensor; float16/bfloat16 are computed in float32 (x and anchors upcast: O((B + k) D) extra memory).
    if _pairwise_cpu(x, anchors):
        return l1_distance(x, anchors)
    return _cdist(x, anchors, 1.0)


@register_projection("linf", invariant_to="coordinate permutations with sign flips, and translations")
def linf(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    if _pairwise_cpu(x, anchors):
        return linf_distance(x, anchors)
    return _cdist(x, anchors, float("inf"))


# ------------------------------------------------------------------------ absolute transforms and subspace norms
AbsTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

ABS_TRANSFORMS: Registry[AbsTransform] = Registry("abs_transform")
SUBSPACE_NORMS: Registry[Callable[[int], nn.Module]] = Registry("subspace_norm")
register_abs_transform = registrar(ABS_TRANSFORMS)
register_subspace_norm = registrar(SUBSPACE_NORMS)


def get_abs_transform(name: str) -> AbsTransform:
    return ABS_TRANSFORMS.get(name)


@register_abs_transform("none")
def no_transform(x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x, anchors


class FittedTransform:
    """An absolute transform fitted on the anchors alone: ``fit(anchors) -> params``, ``apply(params, x)``. Called
    as ``(x, anchors) -> (x', anchors')`` like any registered transform; the head fits it once per anchors tensor."""

    def __init__(self, fit: Callable[[torch.Tensor], Any], apply: Callable[[Any, torch.Tensor], torch.Tensor]):
        self.fit, self.apply = fit, apply

    def __call__(self, x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.fit(anchors)
        return self.apply(params, x), self.apply(params, anchors)


def anchor_scaler(anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and (unbiased) std of the anchors, (1, D) each: the one anchor standardisation (the
    ``standard`` transform, the aligned component, the attach-time translation). A constant dimension keeps std 1,
    as sklearn's ``StandardScaler`` does, so it is centred and never blown up."""
    mean = anchors.mean(dim=0, keepdim=True)
    std = anchors.std(dim=0, keepdim=True)
    return mean, torch.where(std < 10 * torch.finfo(std.dtype).eps, torch.ones_like(std), std)


def _shift_scale(params: tuple, x: torch.Tensor) -> torch.Tensor:
    return (x - params[0]) / params[1]


# centering adds translation invariance to cosine; standard: anchor mean 0 and std 1 per dimension
centering = register_abs_transform("centering")(FittedTransform(lambda a: (a.mean(0, keepdim=True), 1.0), _shift_scale))
standard = register_abs_transform("standard")(FittedTransform(anchor_scaler, _shift_scale))


def ledoit_wolf_shrinkage(centred: torch.Tensor) -> float:
    """Ledoit-Wolf intensity towards ``(tr S / D) I`` for centred samples (n, D), in float64 (sklearn's formula)."""
    x = centred.double()
    n, p = x.shape
    x2 = x**2
    diag = x2.sum(0) / n
    mu = diag.sum() / p
    beta_ = (x2.T @ x2).sum()
    delta_ = ((x.T @ x) ** 2).sum() / n**2
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2 * mu * diag.sum() + p * mu**2) / p
    return float(min(beta, delta) / delta) if delta > 0 else 1.0


def whitening_map(anchors: torch.Tensor, shrinkage: float | str = "lw") -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mean, W, shrinkage) with ``(x - mean) @ W`` whitened by the shrunk anchor covariance
    ``((1 - a) S + a tr(S)/D I)^(-1/2)``; float64, fitted on the anchors only."""
    a64 = anchors.double()
    mean = a64.mean(0, keepdim=True)
    centred = a64 - mean
    k, d = centred.shape
    cov = centred.T @ centred / max(k - 1, 1)
    amount = ledoit_wolf_shrinkage(centred) if shrinkage == "lw" else float(shrinkage)
    if not 0.0 <= amount <= 1.0:
        raise InputError(f"whitening shrinkage must be in [0, 1] or 'lw', got {shrinkage!r}")
    scale = torch.trace(cov) / d
    cov = (1 - amount) * cov + amount * scale * torch.eye(d, dtype=cov.dtype, device=cov.device)
    values, vectors = torch.linalg.eigh(cov)
    floor = values.max().clamp_min(1e-300) * 1e-12  # a singular covariance (k <= D without shrinkage) stays finite
    return mean, (vectors * values.clamp_min(floor).rsqrt()) @ vectors.T, amount


def whiten(x: torch.Tensor, anchors: torch.Tensor, shrinkage: float | str = "lw") -> tuple[torch.Tensor, torch.Tensor]:
    """Centre with the anchor mean and whiten with the anchor covariance (Ledoit-Wolf shrinkage by default).

    Without shrinkage (``shrinkage=0``, needs more anchors than dimensions) inner products and cosines of the
    whitened vectors are invariant to any invertible affine map of the embeddings; shrinkage (needed when k is close
    to or below D) trades part of that invariance for a stable inverse; ``shrinkage=1`` is centring + one isotropic
    scale. Computed in float64, returned in ``x``'s dtype.
    """
    mean, w, _ = whitening_map(anchors, shrinkage)
    return ((x.double() - mean) @ w).to(x.dtype), ((anchors.double() - mean) @ w).to(anchors.dtype)


# ------------------------------------------------------------------------------- statistics of fixed anchors
# Fixed anchors' statistics are computed once per anchors tensor, reused while it is alive and unchanged (same
# version and storage); anchors with a gradient (a trainable encoder) are never memoised.
_ANCHOR_FITS: dict[int, tuple[weakref.ref, tuple, dict]] = {}


def fitted_on_anchors(anchors: torch.Tensor, tag: tuple, fit: Callable[[], Any]) -> Any:
    """``fit()``, computed once per (anchors tensor, its version, ``tag``); ``fit`` must return new tensors only
    (never ``anchors`` or a view of it, which would keep the tensor alive through its memo)."""
    if torch.compiler.is_compiling() or (anchors.requires_grad and torch.is_grad_enabled()):
        return fit()  # a compiled graph computes it in-graph (the memo's stamp reads would break the graph)
    try:
        stamp = (anchors._version, anchors.data_ptr(), tuple(anchors.shape), torch.is_inference_mode_enabled())
    except RuntimeError:  # an inference tensor outside inference mode, or no storage (meta): nothing to key on
        return fit()
    key = id(anchors)
    entry = _ANCHOR_FITS.get(key)
    if entry is None or entry[0]() is not anchors or entry[1] != stamp:
        entry = (weakref.ref(anchors, lambda _, key=key: _ANCHOR_FITS.pop(key, None)), stamp, {})
        _ANCHOR_FITS[key] = entry
    fits = entry[2]
    if tag not in fits:
        fits[tag] = fit()
    return fits[tag]


register_abs_transform("whiten")(
    FittedTransform(lambda a: whitening_map(a)[:2], lambda p, x: ((x.double() - p[0]) @ p[1]).to(x.dtype))
)


register_subspace_norm("layernorm")(lambda k: nn.LayerNorm(k))
register_subspace_norm("batchnorm")(lambda k: nn.BatchNorm1d(k))
register_subspace_norm("none")(lambda k: nn.Identity())


def build_subspace_norm(name: str, num_anchors: int) -> nn.Module:
    return SUBSPACE_NORMS.get(name)(num_anchors)


# -------------------------------------------------------------------------------------------------- aggregations
AGGREGATIONS: Registry[type[nn.Module]] = Registry("aggregation")


def register_aggregation(name: str, **metadata: Any) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        AGGREGATIONS.register(name, cls, **metadata)
        cls.aggregation_name = name
        return cls

    return wrap


def build_aggregation(name: str, num_subspaces: int, subspace_dim: int, width: int | None = None) -> nn.Module:
    """``width`` (default: ``subspace_dim``) caps the learned maps: the paper's k->k maps cost 4*k^2 weights per
    aggregation, 26 MB at k=1280, while k->256 keeps a 1280-anchor head at 5 MB."""
    cls = AGGREGATIONS.get(name)
    return cls(num_subspaces, subspace_dim, min(width or subspace_dim, subspace_dim))


def normalise_weights(weights: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """Weights rescaled so they average 1 over the n subspaces (all ones when None)."""
    if weights is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    weights = weights.to(dtype=like.dtype, device=like.device)
    return weights * (n / weights.sum())


@register_aggregation("concat")
class ConcatAggregation(nn.Module):
    """Cartesian product of the subspaces: output n*k."""

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        self.output_dim = num_subspaces * subspace_dim

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        return (subspaces * w[None, :, None]).flatten(1)


@register_aggregation("sum")
class SumAggregation(nn.Module):
    """Sum of the normalised subspaces (a DeepSet without the inner network): output k."""

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        self.output_dim = subspace_dim

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        return torch.einsum("bnk,n->bk", subspaces, w)


@register_aggregation("mlp_sum")
class MLPSumAggregation(nn.Module):
    """The paper's MLP+Sum: sum_i tanh(Linear_i(r_i)), one k->width map per subspace (k->k in the paper)."""

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        width = width or subspace_dim
        self.output_dim = width
        self.weight = nn.Parameter(torch.empty(num_subspaces, subspace_dim, width))
        self.bias = nn.Parameter(torch.zeros(num_subspaces, width))
        self.reset_parameters()

    def reset_parameters(self, init: Any = nn.init) -> None:
        """The one place that owns this init (``_init_weights`` of the bridge models calls it with transformers'
        guarded ``init``, which leaves loaded weights alone): uniform by fan-in (k), as ``nn.Linear``."""
        bound = self.weight.shape[1] ** -0.5
        init.uniform_(self.weight, -bound, bound)
        init.zeros_(self.bias)

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        # One batched matmul (subspaces as the batch dimension) instead of a Python loop of Linear layers.
        hidden = torch.tanh(torch.baddbmm(self.bias[:, None, :], subspaces.transpose(0, 1), self.weight))
        return torch.einsum("nbj,n->bj", hidden, w)


@register_aggregation("self_attention")
class SelfAttentionAggregation(nn.Module):
    """The subspaces as n tokens, one attention layer, summed over tokens.

    Tokens have width k as in the paper when ``width == k``; a smaller width first maps each subspace k->width
    (one linear map per subspace), which keeps the attention's 4*width^2 weights small for many anchors.
    """

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        width = width or subspace_dim
        self.output_dim = width
        self.token_maps = MLPSumAggregation(num_subspaces, subspace_dim, width) if width < subspace_dim else None
        self.attention = nn.MultiheadAttention(width, num_heads=1, batch_first=True)

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        if self.token_maps is not None:
            maps = self.token_maps
            subspaces = torch.baddbmm(maps.bias[:, None, :], subspaces.transpose(0, 1), maps.weight).transpose(0, 1)
        dropped = (w == 0).expand(subspaces.shape[0], -1)  # dropped subspaces are neither keys nor outputs
        out, _ = self.attention(subspaces, subspaces, subspaces, key_padding_mask=dropped, need_weights=False)
        return torch.einsum("bnk,n->bk", out, w)


@register_aggregation("weighted")
class WeightedAggregation(nn.Module):
    """A learned softmax-weighted average of the normalised subspaces; output k."""

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        self.output_dim = subspace_dim
        self.logits = nn.Parameter(torch.zeros(num_subspaces))

    def reset_parameters(self, init: Any = nn.init) -> None:
        init.zeros_(self.logits)  # a plain average to start with

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        mix = torch.softmax(self.logits, dim=0) * w
        return torch.einsum("bnk,n->bk", subspaces, mix / mix.sum())


# ------------------------------------------------------------------------------------------------------ poolings
Pooler = Callable[[Any, torch.Tensor | None], torch.Tensor]
POOLINGS: Registry[Pooler] = Registry("pooling")
register_pooling = registrar(POOLINGS)


def get_pooling(name: str) -> Pooler:
    return POOLINGS.get(name)


def _tokens(outputs: Any) -> torch.Tensor:
    hidden = outputs.last_hidden_state
    if hidden.dim() == 4:  # vision feature maps (B, C, H, W) -> tokens (B, H*W, C)
        hidden = hidden.flatten(2).transpose(1, 2)
    return hidden


@register_pooling("mean")
def mean_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Average of the token states that the attention mask keeps (padding ignored)."""
    hidden = _tokens(outputs)
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


@register_pooling("cls")
def cls_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    return _tokens(outputs)[:, 0]


@register_pooling("max")
def max_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    hidden = _tokens(outputs)
    if attention_mask is not None:
        hidden = hidden.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)
    return hidden.max(dim=1).values


@register_pooling("pooler")
def pooler_output(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is None:
        raise InputError("pooling='pooler' but the encoder returns no pooler_output; use pooling='mean' or 'cls'")
    return pooled.flatten(1)


# sentence-transformers' other pooling modes (its Pooling module, padded path), so ST models reproduce exactly.
def _mask_or_ones(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    return attention_mask


@register_pooling("mean_sqrt_len")
def mean_sqrt_len_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Sum of the kept token states divided by sqrt(number kept) (sentence-transformers ``mean_sqrt_len_tokens``)."""
    hidden = _tokens(outputs)
    mask = _mask_or_ones(hidden, attention_mask).unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0).sqrt()


@register_pooling("weightedmean")
def weightedmean_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Position-weighted mean, weights 1..n counted from the first kept token (sentence-transformers
    ``weightedmean``, as in SGPT): later tokens of a causal encoder have seen more of the text."""
    hidden = _tokens(outputs)
    mask = _mask_or_ones(hidden, attention_mask)
    weights = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype).view(1, -1, 1)
    weights = weights - mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1).to(hidden.dtype)
    weighted = mask.unsqueeze(-1).to(hidden.dtype) * weights
    return (hidden * weighted).sum(dim=1) / weighted.sum(dim=1).clamp(min=1e-9)


@register_pooling("lasttoken")
def lasttoken_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """State of the last kept token, for left or right padding (sentence-transformers ``lasttoken``; decoder
    embedders such as e5-mistral or gte-Qwen)."""
    hidden = _tokens(outputs)
    mask = _mask_or_ones(hidden, attention_mask)
    kept, flipped = mask.flip(1).max(dim=1)
    last = torch.where(kept == 0, torch.zeros_like(flipped), hidden.shape[1] - 1 - flipped)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


# ------------------------------------------------------------------------------------------------------ the head
def build_classifier(width: int, num_labels: int, hidden_size: int, dropout: float) -> nn.Module:
    """The MLP classifier on r(z) (a single linear layer when ``hidden_size`` is 0)."""
    if not hidden_size:
        return nn.Linear(width, num_labels)
    return nn.Sequential(
        nn.Linear(width, hidden_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_size, num_labels)
    )


def _rename_prefix(old: str, new: str):
    """A ``load_state_dict`` pre-hook: keys ``<prefix>old...`` (the files' names) load as ``<prefix>new...``."""

    def hook(module, state_dict, prefix, *args) -> None:
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)

    return hook


class SummedClassifier(nn.Module):
    """One MLP per component of ``r(z) = [relative, aligned]``; the logits of the present components (a dropped one
    is exactly zero in r(z)) are averaged, so one component alone stays on the scale it was trained on."""

    def __init__(self, relative_dim: int, aligned_dim: int, num_labels: int, hidden_size: int, dropout: float):
        super().__init__()
        self.relative_dim = relative_dim
        self.relative = build_classifier(relative_dim, num_labels, hidden_size, dropout)
        self.aligned = build_classifier(aligned_dim, num_labels, hidden_size, dropout)

    def forward(self, representation: torch.Tensor) -> torch.Tensor:
        parts = (representation[:, : self.relative_dim], representation[:, self.relative_dim :])
        logits = torch.stack([self.relative(parts[0]), self.aligned(parts[1])], dim=1)  # (B, 2, C)
        present = torch.stack([(part != 0).any(dim=1) for part in parts], dim=1).to(logits.dtype)  # (B, 2)
        present = torch.where(present.sum(1, keepdim=True) > 0, present, torch.ones_like(present))
        return (logits * present[..., None]).sum(1) / present.sum(1, keepdim=True)


class RelativeProductHead(nn.Module):
    """Product of relative subspaces, one per projection, aggregated, then an optional MLP classifier.

    The MLP is registered as ``mlp`` (``classifier`` is an alias): peft's SEQ_CLS recipe wraps every module whose path
    ends in ``classifier`` / ``score``, and the bridge registers this head as ``score``, so one wrapper covers it.
    Head-only files keep the historic ``classifier.*`` names; ``load_state_dict`` accepts both."""

    _MODULE_ALIASES = {"classifier": "mlp"}

    def __init__(
        self,
        config: Any,
        num_anchors: int,
        num_labels: int | None = None,
        embedding_dim: int | None = None,
    ):
        """``config``: the :class:`~.configuration_bridge.HeadConfig` (its fields are the head's only spelling);
        ``embedding_dim``: the current encoder's width (the aligned map's input). An aligned head whose config
        has no ``aligned_dim`` takes ``embedding_dim`` and records it there (the training encoder's width)."""
        super().__init__()
        if config.aligned and config.aligned_dim is None:
            if embedding_dim is None:
                raise InputError("an aligned head needs aligned_dim (the training encoder's width) or embedding_dim")
            config.aligned_dim = int(embedding_dim)
        relative_anchors, aligned = config.relative_anchors, bool(config.aligned)
        if num_anchors < 2:
            raise InputError(f"a relative space needs at least 2 anchors, got {num_anchors}")
        relative_anchors = num_anchors if relative_anchors is None else int(relative_anchors)
        if not 2 <= relative_anchors <= num_anchors:
            raise InputError(f"relative_anchors must be in [2, num_anchors={num_anchors}], got {relative_anchors}")
        if relative_anchors < num_anchors and not aligned:
            raise InputError(
                f"relative_anchors={relative_anchors} < num_anchors={num_anchors}: the other anchors only fit the "
                "aligned map, and this head has no aligned component (aligned=False); pass only the relative anchors"
            )
        projections, abs_transform = config.projections, config.abs_transform
        self.projection_names = list(projections)
        self.abs_transform_name = abs_transform
        self._projections = [get_projection(name).fn for name in self.projection_names]
        self._abs_transform = get_abs_transform(abs_transform)
        k = relative_anchors  # the relative subspaces' width; the rest of the anchors only fit the aligned map
        self.norms = nn.ModuleList(build_subspace_norm(config.subspace_norm, k) for _ in self.projection_names)
        self.aggregation = build_aggregation(config.aggregation, len(self.projection_names), k, config.aggregation_dim)
        self.subspace_dropout = config.subspace_dropout
        self.component_dropout = config.component_dropout
        self.num_anchors = num_anchors
        self.relative_anchors = k
        self.aligned = bool(aligned)
        self.aligned_dim = 0
        if self.aligned:
            self.aligned_dim = int(config.aligned_dim)
            self.aligned_norm = nn.LayerNorm(self.aligned_dim)
            self.reset_alignment(int(embedding_dim or self.aligned_dim))
        self.output_dim = self.aggregation.output_dim + self.aligned_dim
        self.combine = config.combine if self.aligned else "concat"
        self.relative_space = "native"
        if (
            self.aligned and (config.alignment or {}).get("relative_space") == "translated"
        ):  # filled by load_state_dict (the stitched head's buffer)
            self.set_relative_space(torch.zeros(k, self.aligned_dim))
        self._classifier_shape = (config.classifier_hidden_size, config.classifier_dropout)
        self.mlp: nn.Module | None = None
        self.register_load_state_dict_pre_hook(_rename_prefix("classifier.", "mlp."))
        if num_labels:
            self.reset_classifier(num_labels)

    def reset_classifier(self, num_labels: int) -> None:
        """A fresh classifier (one per component for ``combine='sum'``, else one MLP on r(z))."""
        hidden, dropout = self._classifier_shape
        old = self.classifier
        if self.combine == "sum":
            self.classifier = SummedClassifier(
                self.aggregation.output_dim, self.aligned_dim, num_labels, hidden, dropout
            )
        else:
            self.classifier = build_classifier(self.output_dim, num_labels, hidden, dropout)
        if old is not None:
            param = next(old.parameters())
            self.classifier.to(param.device, param.dtype)

    @property
    def classifier(self) -> nn.Module | None:
        return self._modules.get("mlp")

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(self._MODULE_ALIASES.get(name, name), value)

    # ------------------------------------------------------------------------------------------ aligned component
    def reset_alignment(self, input_dim: int) -> None:
        """Identity map (zero-padded / cut for another width): the head on its training encoder."""
        old = getattr(self, "aligned_weight", None)
        device = old.device if old is not None else None  # no value checks: this also runs on the meta device
        self.register_buffer("aligned_weight", torch.eye(input_dim, self.aligned_dim, device=device))
        self.register_buffer("aligned_bias", torch.zeros(self.aligned_dim, device=device))
        self.set_relative_space(None)

    def set_relative_space(self, training_anchors: torch.Tensor | None) -> None:
        """``None``: the relative component reads the current encoder's own embeddings and anchors ("native").
        A (relative_anchors, aligned_dim) tensor: the training encoder's relative anchors in its standardised space;
        the relative component then reads the mapped embeddings ``std(z) @ R + b`` against them ("translated": exact
        under any affine map the translation recovers). Saved with the weights as ``aligned_anchors``."""
        if training_anchors is None:
            if "aligned_anchors" in self._buffers:
                del self._buffers["aligned_anchors"]
            self.relative_space = "native"
            return
        if training_anchors.dim() != 2 or training_anchors.shape != (self.relative_anchors, self.aligned_dim):
            raise InputError(
                f"training anchors for the translated relative space must be ({self.relative_anchors}, "
                f"{self.aligned_dim}), got {tuple(training_anchors.shape)}"
            )
        old = getattr(self, "aligned_weight", None)
        device = old.device if old is not None else None
        self.register_buffer("aligned_anchors", training_anchors.detach().float().to(device).contiguous())
        self.relative_space = "translated"

    @property
    def translated_anchors(self) -> torch.Tensor | None:
        """The training encoder's relative anchors the translated relative space reads (None when native)."""
        return self._buffers.get("aligned_anchors")

    def set_alignment(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """The map ``std(z) @ weight + bias`` from the current encoder's anchor-standardised space into the
        training encoder's (fitted at attach time, see ``translation.fit_translation``); saved with the weights."""
        if not self.aligned:
            raise InputError("this head has no aligned component (aligned=False)")
        if weight.dim() != 2 or weight.shape[1] != self.aligned_dim or tuple(bias.shape) != (self.aligned_dim,):
            raise InputError(
                f"alignment must be (D, {self.aligned_dim}) + ({self.aligned_dim},), got "
                f"{tuple(weight.shape)} + {tuple(bias.shape)}"
            )
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise InputError("the alignment map holds NaN or inf; refit it on finite anchor embeddings")
        old = getattr(self, "aligned_weight", None)
        device = old.device if old is not None else None
        self.register_buffer("aligned_weight", weight.detach().float().to(device).contiguous())
        self.register_buffer("aligned_bias", bias.detach().float().to(device).contiguous())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a stitched head's map has the new encoder's width: take the saved shape before loading
        key = prefix + "aligned_weight"
        if self.aligned and key in state_dict and state_dict[key].shape != self.aligned_weight.shape:
            self.reset_alignment(int(state_dict[key].shape[0]))
        if self.aligned and prefix + "aligned_anchors" in state_dict and self.relative_space == "native":
            self.set_relative_space(torch.zeros(self.relative_anchors, self.aligned_dim))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def aligned_inputs(self, embeddings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """``std(z) @ R + b`` before the LayerNorm: the samples in the training encoder's standardised space."""
        if embeddings.shape[1] != self.aligned_weight.shape[0]:
            raise InputError(
                f"the aligned component maps width {self.aligned_weight.shape[0]}, got {embeddings.shape[1]}: attach "
                "the head to this encoder so the map is fitted to it (from_encoder(encoder, head=...); on a built bridge "
                "attach_encoder(module) or stitch_anchor_embeddings(...))"
            )
        dtype = embeddings.dtype  # anchor statistics computed once per anchors tensor (transforms.fitted_on_anchors)
        mean, std = fitted_on_anchors(anchors, ("aligned", dtype), lambda: anchor_scaler(anchors.to(dtype)))
        weight = self.aligned_weight.to(embeddings.dtype)
        return ((embeddings - mean) / std) @ weight + self.aligned_bias.to(embeddings.dtype)

    def relative_subspaces(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, mapped: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The raw relative subspaces, stacked (B, n, k), before normalisation. ``mapped``: the samples'
        ``aligned_inputs`` when the caller has them already (the translated space reads them)."""
        fitted_on_anchors(anchors, ("checked",), lambda: check_anchor_embeddings(anchors) or True)
        check_embeddings(embeddings, anchors.shape[1])
        given = anchors
        anchors = self.relative_slice(anchors)
        if self.relative_space == "translated":  # mapped samples against the training encoder's anchors
            embeddings = self.aligned_inputs(embeddings, anchors) if mapped is None else mapped
            given = anchors = self.aligned_anchors
        transform, dtype = self._abs_transform, embeddings.dtype
        if not isinstance(transform, FittedTransform):
            x, a = transform(embeddings, anchors.to(dtype))
        else:  # the anchors' side fitted once per anchors tensor, the samples' side applied per call

            def fit() -> tuple:
                params = transform.fit(anchors.to(dtype))
                return params, transform.apply(params, anchors.to(dtype))

            params, a = fitted_on_anchors(given, ("abs", transform, self.relative_anchors, dtype), fit)
            x = transform.apply(params, embeddings)
        return torch.stack([project(x, a) for project in self._projections], dim=1)

    def relative_slice(self, anchors: torch.Tensor) -> torch.Tensor:
        """The anchors the relative subspaces read: the first ``relative_anchors`` (all of them unless the head
        keeps an alignment set, anchors that only fit the aligned map)."""
        if self.relative_anchors == self.num_anchors:
            return anchors
        if anchors.shape[0] != self.num_anchors:
            raise InputError(
                f"this head reads {self.num_anchors} anchors ({self.relative_anchors} relative + "
                f"{self.num_anchors - self.relative_anchors} for the aligned map), got {anchors.shape[0]}"
            )
        return anchors[: self.relative_anchors]

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the head computes in: its parameters' (float32 unless the model was cast with ``.to()`` /
        ``.half()``). Embeddings and anchors of any float dtype are cast to it at the boundary
        (docs/method.md#precision)."""
        floats = (t.dtype for t in (*self.parameters(), *self.buffers()) if t.is_floating_point())
        return next(floats, torch.float32)

    def _training_mask(self, n: int, device: torch.device) -> torch.Tensor:
        """Subspace dropout: a random non-empty subset of the subspaces for this batch."""
        keep = torch.rand(n, device=device) >= self.subspace_dropout
        if torch.compiler.is_compiling():  # the same rule without a data-dependent branch (no graph break)
            fallback = torch.zeros_like(keep).index_fill_(0, torch.randint(n, (1,), device=device), True)
            keep = torch.where(keep.any(), keep, fallback)
        elif not keep.any():
            keep[torch.randint(n, (1,), device=device)] = True
        return keep.float()

    def represent(
        self,
        embeddings: torch.Tensor,
        anchors: torch.Tensor,
        subspace_weights: torch.Tensor | None = None,
        return_subspaces: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """r(z): normalise each subspace, then aggregate with the (optional) subspace weights. Computed in
        :attr:`compute_dtype` whatever the embeddings' dtype (bf16 / fp16 / float64 features included)."""
        dtype = self.compute_dtype
        embeddings, anchors = embeddings.to(dtype), anchors.to(dtype)
        mapped = None
        if self.aligned:  # mapped once, for both components (checked first: a wrong width names the width)
            fitted_on_anchors(anchors, ("checked",), lambda: check_anchor_embeddings(anchors) or True)
            check_embeddings(embeddings, anchors.shape[1])
            mapped = self.aligned_inputs(embeddings, anchors)
        raw = self.relative_subspaces(embeddings, anchors, mapped)
        normed = torch.stack([norm(raw[:, i]) for i, norm in enumerate(self.norms)], dim=1)
        if self.aligned:
            return self._represent_aligned(mapped, normed, subspace_weights, return_subspaces)
        weights = subspace_weights
        if self.training and self.subspace_dropout > 0:
            mask = self._training_mask(normed.shape[1], normed.device)
            weights = mask if weights is None else weights.to(mask) * mask
            if weights.sum() == 0:
                weights = mask
        representation = self.aggregation(normed, weights)
        return (representation, normed) if return_subspaces else representation

    def _represent_aligned(self, mapped, normed, subspace_weights, return_subspaces):
        """[aggregation(relative subspaces), LayerNorm(aligned)], each component weighted (0 drops it).

        ``combine='sum'``: a dropped component's part is exactly zero (the summed classifier then averages the
        other component's logits alone); weights > 0 act inside the relative aggregation, the aligned part is kept
        as is. ``concat``: the aligned part is scaled by its weight."""
        n = normed.shape[1]
        aligned = self.aligned_norm(mapped)
        summed = self.combine == "sum"
        if subspace_weights is not None:
            weights = torch.as_tensor(subspace_weights).to(normed)
            if weights.shape[-1] != n + 1:
                raise InputError(
                    f"subspace_weights needs {n + 1} values ({n} projections + the aligned component), "
                    f"got {weights.shape[-1]}"
                )
            relative_w, aligned_w = weights[:n], weights[n]
            # all relative weights 0: the component is absent (zeros). Branch-free, so torch.compile keeps one graph.
            present = relative_w.sum() > 0
            relative = self.aggregation(normed, torch.where(present, relative_w, torch.ones_like(relative_w)))
            relative = relative * present.to(relative.dtype)
            aligned_scale = (aligned_w > 0).to(normed) if summed else aligned_w
            representation = torch.cat([relative, aligned * aligned_scale], dim=1)
        elif self.training and self.component_dropout > 0:
            keep = (torch.rand(normed.shape[0], n + 1, device=normed.device) >= self.component_dropout).to(normed)
            dead = keep.sum(1) == 0
            if torch.compiler.is_compiling():  # the same rule without a data-dependent branch (no graph break)
                pick = torch.randint(n + 1, (normed.shape[0],), device=normed.device)
                keep = torch.where(dead[:, None], nn.functional.one_hot(pick, n + 1).to(keep), keep)
            elif dead.any():
                keep[dead, torch.randint(n + 1, (int(dead.sum()),), device=normed.device)] = 1.0
            relative = self.aggregation(normed * keep[:, :n, None])
            if summed:  # all relative subspaces dropped: the component is absent, not the aggregation's bias
                relative = relative * (keep[:, :n].sum(1, keepdim=True) > 0).to(relative)
            representation = torch.cat([relative, aligned * keep[:, n:]], dim=1)
        else:
            representation = torch.cat([self.aggregation(normed), aligned], dim=1)
        return (representation, normed) if return_subspaces else representation

    def forward(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, subspace_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits when the head has a classifier, else the product representation."""
        representation = self.represent(embeddings, anchors, subspace_weights)
        return self.classifier(representation) if self.classifier is not None else representation
