"""Stitch report figures: one summary figure per run referenced in report.md; heatmap colours span the data."""

from __future__ import annotations

import matplotlib
import numpy as np

from hf_bridges.stitching.config import parse_config
from hf_bridges.stitching.report import colour_range, summarise, worst_pair, write_outputs

matplotlib.use("Agg")
# accuracy by (train, test): the worst stitched pair is enc1 -> enc2
ACC = {
    ("enc0", "enc0"): 0.97,
    ("enc1", "enc1"): 0.96,
    ("enc2", "enc2"): 0.95,
    ("enc0", "enc1"): 0.94,
    ("enc1", "enc0"): 0.93,
    ("enc0", "enc2"): 0.90,
    ("enc2", "enc0"): 0.91,
    ("enc1", "enc2"): 0.80,
    ("enc2", "enc1"): 0.88,
}


def fake_results(config):
    runs = []
    for method in config.methods:
        for seed in config.seeds:
            for (a, b), acc in ACC.items():
                value = acc + 0.01 * seed
                runs.append(
                    {
                        "method": method.name,
                        "seed": seed,
                        "train": a,
                        "test": b,
                        "accuracy": value,
                        "macro_f1": value - 0.01,
                        "latent": {},
                    }
                )
    results = {
        "runs": runs,
        "dataset": {"train": 90, "test": 30, "num_labels": 5},
        "timing_s": {k: 1.0 for k in ("setup", "embedding", "heads", "evaluation", "total")},
    }
    results["summary"] = summarise(results, config)
    return results


def test_summary_figure_written_and_referenced(tmp_path):
    config = parse_config(
        {
            "name": "plots",
            "encoders": [{"id": f"org/enc{i}", "name": f"enc{i}"} for i in range(3)],
            "methods": [{"name": "absolute", "kind": "absolute"}, {"name": "cosine"}],
            "seeds": [0, 1],
        }
    )
    results = fake_results(config)
    assert worst_pair(results["summary"]["cosine"]) == ("enc1", "enc2", 0.805)
    outputs = write_outputs(results, config, tmp_path)
    figure = tmp_path / "summary.png"
    assert outputs["summary_plot"] == str(figure) and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(figure)
    assert image.shape[0] > 200 and image[..., :3].std() > 0.05  # a drawn figure, not a blank canvas
    report = (tmp_path / "report.md").read_text()
    assert "(summary.png)" in report and all(f"(heatmap-{m}.png)" in report for m in ("absolute", "cosine"))
    assert all((tmp_path / f"heatmap-{m}.png").is_file() for m in ("absolute", "cosine"))


def test_a_reused_output_folder_keeps_no_heatmap_of_an_earlier_run(tmp_path):
    """A rerun with other methods into the same folder left the earlier methods' heatmaps next to the new report,
    read as this run's; other files in the folder are the user's and stay."""
    encoders = [{"id": f"org/enc{i}", "name": f"enc{i}"} for i in range(3)]
    first = parse_config({"name": "a", "encoders": encoders, "methods": [{"name": "absolute", "kind": "absolute"}]})
    write_outputs(fake_results(first), first, tmp_path)
    (tmp_path / "notes.png").write_bytes(b"mine")
    second = parse_config({"name": "b", "encoders": encoders, "methods": [{"name": "cosine"}]})
    write_outputs(fake_results(second), second, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["heatmap-cosine.png", "notes.png", "summary.png"]


def test_heatmap_colours_separate_close_accuracies():
    values = np.array([[0.97, 0.94], [np.nan, 0.95]])
    vmin, vmax = colour_range(values)
    assert 0.9 < vmin < 0.94 and 0.97 < vmax < 1.0
    cmap = matplotlib.colormaps["viridis"]
    norm = matplotlib.colors.Normalize(vmin, vmax)
    gap = np.abs(np.array(cmap(norm(0.94))[:3]) - np.array(cmap(norm(0.97))[:3])).max()
    old_gap = np.abs(np.array(cmap(0.94)[:3]) - np.array(cmap(0.97)[:3])).max()  # the old fixed 0..1 scale
    assert gap > 0.5 and gap > 5 * old_gap
    assert colour_range(np.array([[np.nan]])) == (0.0, 1.0)
    low, high = colour_range(np.array([[0.9, 0.9]]))
    assert low < 0.9 < high  # constant data still gets a scale
