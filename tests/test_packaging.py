"""pyproject.toml and environment.yml describe the same environment; the layout is the product's."""
import re
import tomllib

import yaml
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ @\[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {_name(d) for d in deps}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = {_name(d) for d in conda + pip if not d.startswith(("-e", "python", "pip"))}
    assert wanted == have, f"only in pyproject: {wanted - have}; only in environment.yml: {have - wanted}"
    assert "jupyter-book>=1.0.4,<2" in pip and "jupyter-book>=1.0.4,<2" in deps
    assert env["channels"] == ["conda-forge"]


def test_torch_pin_in_install_step():
    assert "torch==2.14.1 torchvision==0.29.1" in (ROOT / "Makefile").read_text()
    assert "torch==2.14.1" in (ROOT / "environment.yml").read_text()


def test_layout():
    for path in ["book", "notebooks", "ssltutor", "tests", "_config.yml", "_toc.yml", "environment.yml",
                 "pyproject.toml", "README.md", ".ci/run", "Makefile"]:
        assert (ROOT / path).exists(), path


def test_ci_treats_no_tests_as_failure():
    assert "exit 1" in (ROOT / "Makefile").read_text() and "-eq 5" in (ROOT / "Makefile").read_text()
