"""The ACE figure: per-layer trajectories of |γ|, λ and u, drawn into a PNG."""

import pytest

from bayesym.selectors.ace_figure import plot_ace_history, trajectories


def _history(epochs=3, layers=("blocks.0.layer", "blocks.1.layer")):
    return [
        {
            "epoch": e + 1,
            "gamma": {layer: 0.5 ** (e + i) for i, layer in enumerate(layers)},
            "lambda": {layer: -0.1 * e * (i + 1) for i, layer in enumerate(layers)},
            "u": dict.fromkeys(layers, 0.0),
        }
        for e in range(epochs)
    ]


def test_trajectories_per_quantity_and_layer():
    series = trajectories(_history())
    assert list(series) == ["gamma", "lambda", "u"]
    assert series["gamma"]["blocks.1.layer"] == [0.5, 0.25, 0.125]
    assert series["lambda"]["blocks.1.layer"] == pytest.approx([0.0, -0.2, -0.4])


def test_a_history_without_ace_quantities_is_refused():
    with pytest.raises(ValueError, match="empty"):
        trajectories([])
    with pytest.raises(ValueError, match=r"no \['lambda', 'u'\] per layer"):
        trajectories([{"epoch": 1, "gamma": {"a": 1.0}}])


def test_the_figure_is_written(tmp_path):
    path = tmp_path / "ace.png"
    history = _history()
    history[0]["gamma"]["blocks.0.layer"] = 0.0  # log panel copes with an exact zero
    plot_ace_history(history, path, title="ace-eq")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
