"""``bayesym data``: list the registered tasks and render labelled sample grids.

Usage::

    bayesym data list
    bayesym data show TASK --out FILE.png [--n 16] [--seed 0] [--split train] [--root DIR]

``show`` builds the task's split exactly as :func:`bayesym.data.make_task` does (not
standardised) and draws its first ``n`` samples in a grid, each titled with its class
name and what the task's transformation did to it (angle, quadrant, shift, D4 element,
AEN powers). Rendering uses matplotlib's Agg canvas directly (no pyplot, no display).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bayesym.cli.errors import CliError
from bayesym.data.image_dataset import ImageDataset
from bayesym.data.registry import TASKS, make_task
from bayesym.data.splits import SPLITS
from bayesym.data.symmetry_tasks import QUADRANT_NAMES

__all__ = ["describe_sample", "register", "render_sample_grid"]


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command (with ``list`` and ``show``) to the top-level subparsers."""
    parser = subparsers.add_parser(
        "data",
        help="list symmetry tasks and render sample grids",
        description="Inspect the registered datasets and symmetry tasks.",
    )
    commands = parser.add_subparsers(dest="data_command", metavar="{list,show}")
    listing = commands.add_parser("list", help="list the registered tasks")
    listing.set_defaults(handler=_list)
    show = commands.add_parser(
        "show",
        help="render a labelled grid of samples of a task",
        description="Render the first N samples of a task's split as a labelled image grid.",
    )
    show.add_argument("task", help="task name (see `bayesym data list`)")
    show.add_argument("--out", required=True, type=Path, help="output image, e.g. grid.png")
    show.add_argument("--n", type=_positive_int, default=16, help="number of samples (16)")
    show.add_argument("--seed", type=_non_negative_int, default=0, help="task seed (0)")
    show.add_argument("--split", choices=SPLITS, default="train", help="split (train)")
    show.add_argument("--root", type=Path, default=None, help="Fashion-MNIST directory")
    show.set_defaults(handler=_show)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _list(args: argparse.Namespace) -> int:
    width = max(map(len, TASKS))
    print(f"{'task':<{width}}  classes  {'shape':<11}  description")
    for spec in TASKS.values():
        shape = "x".join(map(str, spec.image_shape))
        print(f"{spec.name:<{width}}  {spec.num_classes:>7}  {shape:<11}  {spec.description}")
    return 0


def describe_sample(dataset: ImageDataset, index: int) -> str:
    """One short line: the class name and what the task's transformation drew for the sample."""
    parts = [dataset.class_names[int(dataset.labels[index])]]
    for key, values in dataset.metadata.items():
        value = values[index]
        if key == "angle":
            parts.append(f"{float(value):.0f}°")
        elif key == "quadrant":
            where = QUADRANT_NAMES[int(value)]
            if where not in parts[0]:  # position tasks already name it in the class
                parts.append(where)
        elif key == "shift":
            parts.append(f"shift {int(value[0]):+d},{int(value[1]):+d}")
        elif key == "d4_element":
            parts.append(f"R^{int(value) % 4} F^{int(value) // 4}")
        elif key == "powers":
            if value.numel():
                parts.append("k=" + ",".join(str(int(k)) for k in value))
        else:
            parts.append(f"{key}={value.tolist()}")
    return "\n".join(parts)


def render_sample_grid(dataset: ImageDataset, n: int, out: Path, title: str) -> None:
    """Draw the first ``n`` samples of ``dataset`` in a titled grid and save it to ``out``.

    All panels share one grey scale (the range of the shown images), so intensities are
    comparable across samples. The file format follows ``out``'s suffix.
    """
    n = min(n, len(dataset))
    images = dataset.images[:n].detach().to("cpu", torch.float32)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    figure = Figure(figsize=(1.7 * cols, 1.9 * rows + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False)
    low, high = float(images.min()), float(images.max())
    for i, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if i >= n:
            continue
        image = images[i]
        shown = image[0] if image.shape[0] == 1 else image[:3].permute(1, 2, 0)
        if image.shape[0] > 1:
            shown = (shown - low) / max(high - low, 1e-12)
        axis.imshow(shown.numpy(), cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        axis.set_title(describe_sample(dataset, i), fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.savefig(out, dpi=100)


def _show(args: argparse.Namespace) -> int:
    out: Path = args.out
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise CliError(
            f"--out {out}: unsupported image format {out.suffix or '(no suffix)'}; "
            f"use one of {', '.join('.' + f for f in sorted(formats))}"
        )
    if not out.parent.is_dir():
        raise CliError(f"--out {out}: directory {out.parent} does not exist")
    dataset = make_task(args.task, split=args.split, seed=args.seed, root=args.root)
    if args.n > len(dataset):
        raise CliError(f"--n {args.n} exceeds the {len(dataset)} samples of {dataset.name}")
    title = f"{dataset.name}  seed={args.seed}  ({len(dataset)} samples, first {args.n} shown)"
    try:
        render_sample_grid(dataset, args.n, out, title)
    except OSError as err:
        raise CliError(f"--out {out}: cannot write ({err.strerror or err})", exit_code=1) from None
    print(f"wrote {out} ({args.n} samples of {dataset.name})")
    return 0
