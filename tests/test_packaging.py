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


def test_wheel_ships_the_paper_numbers(tmp_path):
    """ssltutor/paper_numbers.csv links to results/paper_numbers.csv; the wheel (what Colab installs) carries it."""
    import subprocess
    import sys
    import zipfile

    link = ROOT / "ssltutor" / "paper_numbers.csv"
    assert link.is_symlink() and link.resolve() == (ROOT / "results" / "paper_numbers.csv").resolve()
    import shutil

    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(ROOT / "ssltutor", source / "ssltutor", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (source / "results").mkdir()
    shutil.copy(ROOT / "results" / "paper_numbers.csv", source / "results")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("ssltutor-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("ssltutor/paper_numbers.csv").decode()
    assert shipped == (ROOT / "results" / "paper_numbers.csv").read_text()
