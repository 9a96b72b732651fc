"""Every notebook in notebooks/ (by glob): its conventions, a run under ``pytest --nbval-lax`` at the smoke preset, and
each paper notebook on each of the three real subsets through papermill, checking its metrics.json.

nbval cannot inject parameters, so each notebook is first parameterized with papermill (its injected cell sets
``preset = "smoke"``) into a temp folder, and nbval runs that copy in a child pytest: every cell must run without an
error (``--nbval-lax``: outputs are compared only in cells marked ``# NBVAL_CHECK_OUTPUT``, after the substitutions
of tests/nbval_sanitize.cfg).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import nbformat
import papermill
import pytest
from notebook_runs import NOTEBOOKS, PAPER_NOTEBOOKS, REAL_DATASETS, ROOT, ids, smoke_batch

from ssltutor.book import colab_cell, toc_files
from ssltutor.runs import COMMON_PARAMETERS, notebook_parameters, relative_path_parameters

SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"


def test_notebooks_exist_and_are_in_the_toc():
    assert NOTEBOOKS, "no NN_name.ipynb notebooks in notebooks/"
    in_toc = {str(p) for p in toc_files(ROOT)}
    missing = [nb.name for nb in NOTEBOOKS if f"notebooks/{nb.name}" not in in_toc]
    assert not missing, f"notebooks not listed in _toc.yml (the book would not show them): {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_conventions(path):
    """Title, the exact Colab cell (repository URL from _config.yml), a parameters cell, no committed outputs."""
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "cell 1: a markdown title"
    assert nb.cells[1].cell_type == "code" and nb.cells[1].source.strip() == colab_cell(ROOT), (
        f"cell 2 must be exactly the Colab cell, with the URL of _config.yml:\n{colab_cell(ROOT)}")
    assert "parameters" in nb.cells[2].metadata.get("tags", []), "cell 3: the cell tagged 'parameters'"
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not with_outputs, f"commit notebooks without outputs (cells {with_outputs} have some)"


MAX_CODE_LINE = 79  # PEP 8's limit; the rendered book shows about 78 characters of a code line


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_code_lines_fit_the_page(path):
    """Every line of every code cell is at most 79 characters, so the book shows it without scrolling sideways."""
    nb = nbformat.read(path, as_version=4)
    too_long = [f"  cell {i}, line {n}: {len(line)} characters: {line}"
                for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
                for n, line in enumerate(cell.source.split("\n"), start=1) if len(line) > MAX_CODE_LINE]
    assert not too_long, (f"{path.name}: code lines over {MAX_CODE_LINE} characters (cells counted from 0, "
                          f"lines from 1); rewrap them:\n" + "\n".join(too_long))


def _fenced_code_lines(markdown: str):
    """(line number, line) of every line inside a fenced code block (```, ```python, ...), not inside a MyST
    directive fence (```{note}, whose body is prose that wraps)."""
    fence = None
    for n, line in enumerate(markdown.split("\n"), start=1):
        if line.lstrip().startswith("```"):
            if fence is None:
                fence = "directive" if line.lstrip()[3:].startswith("{") else "code"
            else:
                fence = None
            continue
        if fence == "code":
            yield n, line


PAGES = [*NOTEBOOKS, *sorted((ROOT / "book").glob("*.md"))]


@pytest.mark.parametrize("path", PAGES, ids=[p.stem for p in PAGES])
def test_markdown_code_blocks_fit_the_page(path):
    """Code shown in markdown (notebook markdown cells and the book's .md pages) fits the page like code cells."""
    texts = ([c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
             if path.suffix == ".ipynb" else [path.read_text()])
    too_long = [f"  block {i}, line {n}: {len(line)} characters: {line}" for i, text in enumerate(texts)
                for n, line in _fenced_code_lines(text) if len(line) > MAX_CODE_LINE]
    assert not too_long, f"{path.name}: code lines over {MAX_CODE_LINE} characters; rewrap them:\n" + "\n".join(
        too_long)


def test_fenced_code_lines_skip_directives():
    text = "```{note}\n" + "x" * 100 + "\n```\n```bash\nls\n```"
    assert list(_fenced_code_lines(text)) == [(5, "ls")]


@pytest.mark.parametrize("path", PAPER_NOTEBOOKS or [None], ids=ids(PAPER_NOTEBOOKS) or ["none"])
def test_paper_notebook_parameters(path):
    assert path is not None, "no paper notebooks (notebooks/02_*.ipynb ... 89_*.ipynb) yet"
    declared = notebook_parameters(path)
    missing = [k for k in COMMON_PARAMETERS if k not in declared]
    assert not missing, f"{path.name}: the parameters cell lacks {missing}"
    # "auto" (colab in a Colab GPU session, else cpu) where the chapter states what its colab preset does
    assert declared["dataset"].default == "digits" and declared["preset"].default in ("cpu", "auto")
    assert declared["data_root"].default is None and declared["seed"].default == 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_runs_under_nbval_at_smoke(path, tmp_path):
    params = relative_path_parameters(path)
    declared = notebook_parameters(path)
    if "preset" in declared:
        params["preset"] = "smoke"
    if "output_dir" in declared:
        params["output_dir"] = str(tmp_path / "outputs")
    copy = tmp_path / path.name
    papermill.execute_notebook(str(path), str(copy), parameters=params, prepare_only=True)  # inject, don't run
    # -c /dev/null --rootdir: the child pytest must not pick up the repository's pytest configuration
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-sanitize-with", str(SANITIZE),
                           "--nbval-cell-timeout", "600", "-p", "no:cacheprovider", "-c", os.devnull,
                           "--rootdir", str(tmp_path), "-q", str(copy)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"nbval failed on {path.name} at preset smoke:\n{proc.stdout[-6000:]}"


CASES = [(nb, ds) for nb in PAPER_NOTEBOOKS for ds in REAL_DATASETS]


@pytest.mark.parametrize("path,dataset", CASES or [(None, None)],
                         ids=[f"{nb.stem}-{ds}" for nb, ds in CASES] or ["none"])
def test_paper_notebook_on_real_subset(path, dataset, shared_data, tmp_path_factory):
    """Run through papermill (``ssltutor batch`` code path) at smoke on the real subset; check its metrics.json."""
    assert path is not None, "no paper notebooks (notebooks/02_*.ipynb ... 89_*.ipynb) yet"
    folder, results = smoke_batch(tmp_path_factory, shared_data)
    result = results[f"{path.stem}/{dataset}"]
    assert result.status == "done", f"{path.name} on {dataset} failed at cell {result.cell}: {result.error}"
    record = json.loads((folder / path.stem / f"{dataset}-smoke-seed0" / "metrics.json").read_text())
    assert record["notebook"] == path.stem
    assert record["params"]["dataset"] == dataset and record["params"]["preset"] == "smoke"
    assert record["params"]["seed"] == 0
    assert record["results"], "metrics.json has no results"
    for variant, metrics in record["results"].items():
        assert metrics, f"variant {variant} has no metrics"
        for name, value in metrics.items():
            assert value is None or math.isfinite(value), f"{variant}/{name} = {value}"
            if value is not None and any(k in name for k in ("accuracy", "precision", "recall", "f1")):
                assert 0.0 <= value <= 1.0, f"{variant}/{name} = {value} is not a fraction"
    assert record["duration_s"] > 0 and record["environment"]["torch"] and record["environment"]["ssltutor"]
    # what the chapters plot from committed results: the images used, the preset, per-epoch (or per-task) histories
    assert record["images"]["train"] > 0 and record["images"]["test"] > 0, record.get("images")
    assert record["settings"]["image_size"] > 0 and "epochs" in record["settings"]
    assert record["histories"] and all(h for h in record["histories"].values()), "empty histories"
    assert all(len(set(map(len, h.values()))) == 1 for h in record["histories"].values()), "ragged history"
