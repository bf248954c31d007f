"""The E3 mixture-weight claims of the EquiNAS reproduction, on made-up selections."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from equinas_d_claims import mixture_claims, rotation_mass


def write(out: Path, seed: int, masses: list[float]) -> None:
    """An equinas-d selection whose block b has z(C4) = z(D4) = masses[b] / 2."""
    choices = [
        {"layer": f"blocks.{b}.conv", "choice": "C1", "symmetry": "",
         "scores": {"C1": 1 - m, "C4": m / 2, "D4": m / 2}}
        for b, m in enumerate(masses)
    ]  # fmt: skip
    folder = out / f"seed{seed}" / "equinas-d"
    folder.mkdir(parents=True)
    (folder / "selection.json").write_text(json.dumps({"choices": choices}))


def test_rotation_mass_reads_c4_plus_d4():
    selection = {"choices": [{"scores": {"C1": 0.5, "C4": 0.2, "D4": 0.3}}, {"scores": {}}]}
    assert rotation_mass(selection) == [0.5, 0.0]


def test_early_versus_late_and_the_control(tmp_path):
    rotated, plain = tmp_path / "rot", tmp_path / "plain"
    for seed, shift in enumerate([0.0, 0.02, 0.04]):
        write(rotated, seed, [0.6 + shift, 0.5, 0.2, 0.1 - shift])
        write(plain, seed, [0.3, 0.3 + shift, 0.3, 0.3])
    claims = mixture_claims(rotated, [0, 1, 2], control=plain)
    depth = claims["E3b_rotation_weight_early_vs_late"]
    assert depth["verdict"] == "higher" and depth["held"] and depth["seeds"] == 3
    assert abs(depth["difference"] - (0.4 + 0.02)) < 1e-12
    control = claims["E3c_rotated_vs_unrotated"]
    assert control["held"] and control["verdict"] == "higher"
    flat = mixture_claims(plain, [0, 1, 2])["E3b_rotation_weight_early_vs_late"]
    assert not flat["held"] and flat["verdict"] in ("within 2 SE", "lower")
    assert (
        mixture_claims(tmp_path / "missing", [0])["E3b_rotation_weight_early_vs_late"]["verdict"]
        == "no data"
    )
