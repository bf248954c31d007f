"""The documentation site: it builds with ``mkdocs build --strict`` and its examples run.

Every ```python block of a page in ``docs/`` is executed, the blocks of one page in order in
one fresh namespace (a page reads top to bottom), in a temporary working directory. A block
preceded by the line ``<!-- skip-test: reason -->`` is not run; the reason is required.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.parts)

_FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S
)
_SKIP = re.compile(r"<!--\s*skip-test:\s*(?P<reason>\S[^>]*?)\s*-->\s*\Z")


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip reason or None)`` of every ```python block of a Markdown page."""
    blocks = []
    for match in _FENCE.finditer(text):
        if match["lang"] != "python":
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip()
        skip = _SKIP.search(before)
        body = "\n".join(
            row[len(match["indent"]) :] for row in match["body"].splitlines()
        )  # blocks nested in lists are indented
        blocks.append((line, body, skip["reason"] if skip else None))
    return blocks


def test_block_extraction_reads_fences_and_skip_markers():
    text = (
        "intro\n\n```python\nx = 1\n```\n\n<!-- skip-test: needs a GPU -->\n"
        "```python\ny = 2\n```\n\n```bash\nls\n```\n\n- item\n\n    ```python\n    z = 3\n    ```\n"
    )
    blocks = python_blocks(text)
    assert [(line, code.strip(), skip) for line, code, skip in blocks] == [
        (3, "x = 1", None),
        (8, "y = 2", "needs a GPU"),
        (18, "z = 3", None),
    ]


def _griffe_extension():
    spec = importlib.util.spec_from_file_location(
        "griffe_docstrings", DOCS / "_ext" / "griffe_docstrings.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstring_roles_become_optional_autorefs():
    convert = _griffe_extension().convert_docstring
    resolved = {"KFAC": "curvature.kfac.KFAC"}
    text = convert("See :class:`KFAC`, :func:`~a.b.fit` and :meth:`KFAC.logdet`.", resolved.get)
    assert '<autoref identifier="curvature.kfac.KFAC" optional><code>KFAC</code></autoref>' in text
    assert '<autoref identifier="a.b.fit" optional><code>fit</code></autoref>' in text
    assert 'identifier="curvature.kfac.KFAC.logdet" optional><code>KFAC.logdet</code>' in text
    assert ":class:" not in text and ":func:" not in text


def test_docstring_maths_sections_and_literals_become_markdown():
    convert = _griffe_extension().convert_docstring
    text = convert(
        "Sum :math:`\\sum_i x_i`.\n\n.. math::\n    y = W x\n\nUsage::\n\n    f(x)\n\n"
        "Example:\n    >>> 1 + 1\n    2"
    )
    assert "<span><math" in text and "<msub>" in text  # inline, kept inline
    assert 'display="block"' in text and ".. math::" not in text
    assert "Usage:\n" in text and "Usage::" not in text
    assert "\nExamples:\n    >>> 1 + 1" in text


def test_docstring_rest_tables_become_markdown_tables():
    convert = _griffe_extension().convert_docstring
    table = (
        "====  ==========  ============\n"
        "name  files       what\n"
        "====  ==========  ============\n"
        "a     ``x|y``     first line\n"
        "                  continued\n"
        "bb    z           a | b\n"
        "====  ==========  ============\n"
    )
    lines = [line for line in convert("Intro:\n\n" + table + "\nAfter.").splitlines() if line]
    assert lines == [
        "Intro:",
        "| name | files | what |",
        "|---|---|---|",
        "| a | ``x|y`` | first line continued |",
        "| bb | z | a \\| b |",
        "After.",
    ]


def test_every_page_is_in_the_navigation():
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)

    def pages(nav):
        for item in nav:
            if isinstance(item, str):
                yield item
            else:
                for value in item.values():
                    yield from [value] if isinstance(value, str) else pages(value)

    in_nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in PAGES}
    assert on_disk - in_nav == set(), "pages missing from mkdocs.yml's nav"


PAGES_WITH_EXAMPLES = [p for p in PAGES if python_blocks(p.read_text())]


@pytest.mark.parametrize(
    "page", PAGES_WITH_EXAMPLES, ids=[str(p.relative_to(DOCS)) for p in PAGES_WITH_EXAMPLES]
)
def test_page_examples_run(page, tmp_path, monkeypatch):
    blocks = python_blocks(page.read_text())
    runnable = [(line, code) for line, code, skip in blocks if skip is None]
    if not runnable:
        pytest.skip("every python block on this page is marked skip-test")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    try:
        for line, code in runnable:
            try:
                exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
            except Exception as err:
                raise AssertionError(
                    f"{page.relative_to(ROOT)}, block at line {line}: {err!r}"
                ) from err
    finally:
        torch.set_num_threads(threads)


def test_mkdocs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail('mkdocs is missing: install the dev extra, pip install -e ".[dev]"')
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "curvature" / "index.html").is_file()
