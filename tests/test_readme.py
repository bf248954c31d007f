"""The README's python snippet runs as written, learns, and prints what it promises."""

import re
from pathlib import Path

import pytest
from torch.utils.data import DataLoader, Dataset

README = Path(__file__).resolve().parents[1] / "README.md"

FASTER = {"epochs=10, burn_in=4, hyper_every=2": "epochs=2, burn_in=1, hyper_every=1"}
"""The fast variant: the same code with fewer epochs (one hyper step after each)."""


def readme_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one python snippet"
    return blocks[0]


def run(code: str, tmp_path, monkeypatch, capsys) -> tuple[dict, str]:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace, capsys.readouterr().out


def check_output(namespace: dict, out: str, epochs: int) -> float:
    """The snippet trained on a DataLoader over a Dataset and printed what it promises."""
    loader = namespace["loader"]
    assert isinstance(loader, DataLoader) and isinstance(loader.dataset, Dataset)
    assert len(namespace["history"]) == epochs and namespace["history"][-1].marglik is not None
    accuracy = float(re.search(r"test accuracy (\S+)", out).group(1))
    assert re.search(r"^layer +path +symmetry +precision .* chosen$", out, flags=re.M)  # the table
    for row in ("0 +ffc", "0 +conv", "2 +ffc", "2 +conv", "6 +Linear"):
        assert re.search(rf"^{row} ", out, flags=re.M), row
    chosen = re.findall(r"^layer (\d) keeps (ffc|conv): symmetry (.+)$", out, flags=re.M)
    assert [layer for layer, _, _ in chosen] == ["0", "2"]
    describe = {"conv": "translations", "ffc": "none"}
    assert all(describe[path] == text for _, path, text in chosen), chosen
    return accuracy


def test_the_readme_snippet_runs_with_fewer_epochs(tmp_path, monkeypatch, capsys):
    code = readme_snippet()
    for old, new in FASTER.items():
        assert old in code, f"the README snippet no longer contains {old!r}: update FASTER"
        code = code.replace(old, new)
    namespace, out = run(code, tmp_path, monkeypatch, capsys)
    assert 0 <= check_output(namespace, out, epochs=2) <= 1


@pytest.mark.slow
def test_the_readme_snippet_as_written_learns(tmp_path, monkeypatch, capsys):
    namespace, out = run(readme_snippet(), tmp_path, monkeypatch, capsys)
    accuracy = check_output(namespace, out, epochs=10)
    assert accuracy > 0.4  # chance is 0.1 (ten digits); measured 0.69
