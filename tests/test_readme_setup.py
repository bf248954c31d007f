"""README's set-up section: the two commands, why the CUDA build, the CPU-only command."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _set_up() -> str:
    text = README.read_text()
    return text[text.index("## Set up") : text.index("## Tests")]


def test_set_up_keeps_the_two_commands_and_says_how_to_install_cpu_only_torch():
    section = _set_up()
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert blocks[0] == (
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"\nbayesym demo\n'
    )
    assert (
        "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
        in (blocks[1])
    )
    assert "CUDA build" in section and "laplace-torch needs" in section
    # what the CLI now does by default is what the README says
    assert "add `--threads 1`" not in section and "one thread unless `--threads N`" in section
