r"""Griffe extension that renders bayesym's docstring conventions on the documentation site.

The docstrings are Google style (what ``ruff`` checks and ``help()`` shows) with a few
reStructuredText habits that Markdown does not understand. Before mkdocstrings renders a
docstring, this extension rewrites them:

* cross-reference roles (``:class:`~curvature.KFAC```, ``:func:`compute_kfac```,
  ``:mod:``, ``:meth:``, ``:attr:``, ``:data:``, ``:exc:``, ``:obj:``) become optional
  autorefs: a link where the target is documented on the site, plain code otherwise. Short
  names are resolved in the scope of the documented object (its module's imports and members);
* maths (``.. math::`` blocks and ``:math:`...``` roles, LaTeX) becomes MathML, which
  browsers render without scripts or network access;
* reST simple tables (columns framed by ``====  ====`` borders) become Markdown tables;
* an ``Example:`` section header becomes ``Examples:``, the header griffe's Google parser
  knows, so doctests render as code;
* ``Usage::`` (a paragraph introducing a literal block) loses its second colon, and the
  reST escape ``\ `` after inline code is dropped.

The library's docstrings stay as they are; only their rendering on the site changes.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Callable
from typing import Any

import griffe
from latex2mathml.converter import convert as latex_to_mathml

__all__ = ["SphinxConventions", "convert_docstring"]

Resolver = Callable[[str], str | None]
"""``resolve(name) -> full path`` of a name in a docstring's scope (or None, or raises)."""

_ROLE = re.compile(r":(?:class|func|mod|meth|attr|data|obj|exc):`(?P<target>[^`]+)`")
_MATH_ROLE = re.compile(r":math:`(?P<tex>[^`]+)`")
_MATH_BLOCK = re.compile(
    r"^(?P<indent>[ ]*)\.\. math::[ ]*\n(?P<body>(?:(?P=indent)[ ]+\S.*\n|[ ]*\n)+)",
    re.M,
)
_EXAMPLE_HEADER = re.compile(r"^(?P<indent>[ ]*)Example:[ ]*$", re.M)
_LITERAL_INTRO = re.compile(r"(?<=\S)::[ ]*$", re.M)
_ESCAPED_SPACE = re.compile(r"``\\ ")
_PIPE_OUTSIDE_CODE = re.compile(r"(``.*?``|`[^`]*`)|\|")
_TABLE_BORDER = re.compile(r"^[ ]*=+(?:[ ]+=+)+[ ]*$")


def _mathml(tex: str, *, display: bool) -> str:
    """One line of MathML for the LaTeX ``tex`` (block or inline)."""
    markup = latex_to_mathml(" ".join(tex.split()), display="block" if display else "inline")
    return markup.replace("\n", "")


def _math_block(match: re.Match[str]) -> str:
    indent = match["indent"]
    return f"{indent}{_mathml(match['body'], display=True)}\n\n"


def _column_starts(border: str) -> list[int]:
    return [m.start() for m in re.finditer(r"=+", border)]


def _split_row(line: str, starts: list[int]) -> list[str]:
    """Cells of one table row; a cell that runs past its column ends at the next space."""
    bounds = []
    for start in starts[1:]:
        while 0 < start < len(line) and line[start - 1] != " " and line[start] != " ":
            start += 1  # inside a word that overflows its column
        bounds.append(start)
    edges = [starts[0], *bounds, len(line)]
    return [line[a:b].strip() for a, b in itertools.pairwise(edges)]


def _escape_pipes(cell: str) -> str:
    """Escape the ``|`` of a table cell outside code spans (Markdown reads those as is)."""
    return _PIPE_OUTSIDE_CODE.sub(lambda m: m[1] or "\\|", cell)


def _markdown_table(lines: list[str]) -> list[str]:
    """A reST simple table (its lines, borders included) as Markdown table lines."""
    starts = _column_starts(lines[0])
    borders = [i for i, line in enumerate(lines) if _TABLE_BORDER.match(line)]
    has_header = len(borders) == 3
    rows: list[list[str]] = []
    for i, line in enumerate(lines):
        if i in borders or not line.strip():
            continue
        cells = _split_row(line, starts)
        if rows and not cells[0] and not (has_header and i < borders[1]):
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    header = rows.pop(0) if has_header else [""] * len(starts)
    escaped = [[_escape_pipes(cell) for cell in row] for row in [header, *rows]]
    out = ["| " + " | ".join(escaped[0]) + " |", "|" + "---|" * len(starts)]
    out += ["| " + " | ".join(row) + " |" for row in escaped[1:]]
    return ["", *out, ""]


def _closing_border(lines: list[str], start: int) -> int | None:
    """Index of the first border at or after ``start`` before a blank line, if any."""
    for index in range(start, len(lines)):
        if not lines[index].strip():
            return None
        if _TABLE_BORDER.match(lines[index]):
            return index
    return None


def _tables(text: str) -> str:
    """Replace every reST simple table of ``text`` by a Markdown table."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        second = _closing_border(lines, i + 1) if _TABLE_BORDER.match(lines[i]) else None
        if second is None:
            out.append(lines[i])
            i += 1
            continue
        end = _closing_border(lines, second + 1) or second  # a third border: with a header
        indent = len(lines[i]) - len(lines[i].lstrip())
        table = _markdown_table([line[indent:] for line in lines[i : end + 1]])
        out += [" " * indent + row if row else row for row in table]
        i = end + 1
    return "\n".join(out)


def _as_written(name: str) -> str:
    return name


def _autoref(target: str, resolve: Resolver) -> str:
    """An optional autoref to ``target`` (``~`` shows only its last component)."""
    short = target.startswith("~")
    target = target.lstrip("~").strip()
    title = target.rsplit(".", 1)[-1] if short else target
    head, _, rest = target.partition(".")
    try:
        resolved = resolve(head)
    except (griffe.NameResolutionError, KeyError, AttributeError, ValueError):
        resolved = None
    identifier = f"{resolved}.{rest}" if resolved and rest else resolved or target
    return (
        f'<autoref identifier="{html.escape(identifier)}" optional>'
        f"<code>{html.escape(title)}</code></autoref>"
    )


def convert_docstring(text: str, resolve: Resolver | None = None) -> str:
    """Rewrite one docstring's reST conventions into Markdown and HTML (see the module).

    Args:
        text: the docstring as griffe holds it (dedented).
        resolve: ``resolve(name) -> full path`` for short names in roles; without it, a
            role's target is taken as written.

    Returns:
        The docstring to render.
    """
    resolve = resolve or _as_written
    text = _tables(text)
    text = _MATH_BLOCK.sub(_math_block, text if text.endswith("\n") else text + "\n").rstrip("\n")
    # A span keeps inline maths inline: Markdown takes a line that starts with <math> for an
    # HTML block.
    text = _MATH_ROLE.sub(lambda m: f"<span>{_mathml(m['tex'], display=False)}</span>", text)
    text = _ROLE.sub(lambda m: _autoref(m["target"], resolve), text)
    text = _EXAMPLE_HEADER.sub(r"\g<indent>Examples:", text)
    text = _LITERAL_INTRO.sub(":", text)
    return _ESCAPED_SPACE.sub("``", text)


class SphinxConventions(griffe.Extension):
    """Apply :func:`convert_docstring` to every docstring once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring in place (before mkdocstrings parses it)."""
        if obj.docstring is not None:
            obj.docstring.value = convert_docstring(obj.docstring.value, obj.resolve)

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite a top-level package's own docstring (``on_object`` covers its members)."""
        self.on_object(obj=pkg, loader=loader)
