r"""EquiNAS_D's mixture-weight claims (target E3 b-c of the EquiNAS reproduction), as measured.

Reads the ``equinas-d`` cells of a ``bayesym compare`` output directory
(``<out>/seed<s>/equinas-d/selection.json``, whose choices score every block by its mixture
weights ``z``) and states, with the reproduction scripts' rule (a mean paired difference over
seeds is called only beyond two standard errors):

* **E3b** "less constrained layers toward the end of the network" (the EquiNAS paper's
  Fig. 2): per seed, the mean over the first half of the blocks of the rotation mass
  :math:`z_{C4} + z_{D4}` minus its mean over the second half; held if *higher*.
* **E3c** (control, needs a second run on unrotated data, e.g. ``--task fmnist``): the
  rotation mass averaged over all blocks on the rotated task minus on the unrotated one,
  paired by seed; held if *higher*.

Usage (after ``benchmarks/reproduce_equinas.py`` ran with ``--selectors ...,equinas-d``, once
on ``rotated-fmnist`` and once with ``--task fmnist --out <plain>``)::

    python benchmarks/equinas_d_claims.py --out runs/reproduce_equinas/none \
        --control runs/reproduce_equinas/none_plain --seeds 0,1,2

``reproduce_equinas.py`` can add the block to its ``acceptance`` with
``from equinas_d_claims import mixture_claims`` and
``"E3_equinas_d_mixture": mixture_claims(out, config.seeds)``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROTATION_GROUPS = ("C4", "D4")
"""The groups whose mixture weight counts as rotation-constrained (90° rotations)."""


def rotation_mass(
    selection: Mapping[str, Any], groups: Sequence[str] = ROTATION_GROUPS
) -> list[float]:
    """Per block of an ``equinas-d`` ``selection.json``: the summed ``z`` of ``groups``."""
    return [sum(float(c["scores"].get(g, 0.0)) for g in groups) for c in selection["choices"]]


def _selection(out: Path, seed: int) -> dict[str, Any] | None:
    path = Path(out) / f"seed{seed}" / "equinas-d" / "selection.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _verdict(values: Sequence[float]) -> dict[str, Any]:
    """Mean and standard error of ``values`` and the 2-SE verdict on their sign."""
    if not values:
        return {"seeds": 0, "verdict": "no data", "held": False}
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    if math.isnan(se):
        verdict = "one seed: no claim"
    elif abs(mean) > 2 * se:
        verdict = "higher" if mean > 0 else "lower"
    else:
        verdict = "within 2 SE"
    return {"seeds": len(values), "difference": mean, "se": se, "verdict": verdict,
            "held": verdict == "higher"}  # fmt: skip


def depth_claim(out: Path, seeds: Sequence[int]) -> dict[str, Any]:
    """E3b: rotation mass of the first half of the blocks minus the second half's."""
    per_seed, differences = [], []
    for seed in seeds:
        selection = _selection(out, seed)
        if selection is None:
            continue
        mass = rotation_mass(selection)
        half = len(mass) // 2
        early, late = statistics.fmean(mass[:half]), statistics.fmean(mass[half:])
        per_seed.append({"seed": seed, "rotation_mass": mass, "early": early, "late": late})
        differences.append(early - late)
    return {"claim": "mean z(C4)+z(D4) higher in the first half of the blocks than in the second",
            **_verdict(differences), "per_seed": per_seed}  # fmt: skip


def control_claim(out: Path, control: Path, seeds: Sequence[int]) -> dict[str, Any]:
    """E3c: mean rotation mass on the rotated task minus on the unrotated control."""
    per_seed, differences = [], []
    for seed in seeds:
        rotated, plain = _selection(out, seed), _selection(control, seed)
        if rotated is None or plain is None:
            continue
        a, b = statistics.fmean(rotation_mass(rotated)), statistics.fmean(rotation_mass(plain))
        per_seed.append({"seed": seed, "rotated": a, "unrotated": b})
        differences.append(a - b)
    return {"claim": "mean z(C4)+z(D4) higher on rotated than on unrotated data",
            **_verdict(differences), "per_seed": per_seed}  # fmt: skip


def mixture_claims(out: Path, seeds: Sequence[int], control: Path | None = None) -> dict[str, Any]:
    """E3b, and E3c when a ``control`` output directory (unrotated data) is given."""
    claims = {"E3b_rotation_weight_early_vs_late": depth_claim(Path(out), seeds)}
    if control is not None:
        claims["E3c_rotated_vs_unrotated"] = control_claim(Path(out), Path(control), seeds)
    return claims


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="compare output directory (rotated task)")
    parser.add_argument("--control", default=None, help="the same on unrotated data")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    claims = mixture_claims(
        Path(args.out), seeds, None if args.control is None else Path(args.control)
    )
    print(json.dumps(claims, indent=1))
    return claims


if __name__ == "__main__":
    main()
