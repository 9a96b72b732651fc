"""Build the jupyter-book from executed notebooks: ``ssltutor book [--from runs/NAME]``.

Why execute with papermill first and let jupyter-book only render (execution off in the staged config) rather than
``execute_notebooks: force``: one execution path for the book, ``ssltutor batch`` and the notebook tests (the same
cwd, kernel and error report: the failing cell and its error, not a Sphinx traceback); ``--from`` can reuse notebooks a
batch already executed (on real data, any preset) without re-running them; and independent notebooks can run in
parallel workers. The repository's ``_config.yml`` keeps ``execute_notebooks: force`` so that a plain
``jupyter-book build .`` still produces a complete book.

Steps: (1) execute every notebook of ``_toc.yml`` into ``_build/book_runs/<stem>/`` (or take it from ``--from``);
(2) stage the book sources in ``_build/book_src/`` with the executed copies in place of the notebooks and papermill's
injected-parameters cell collapsed (tag ``hide-cell``); (3) ``jupyter-book build`` them with warnings as errors into
``_build/html``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import yaml

from .runs import ROOT, Job, JobResult, notebook_parameters, run_jobs, summary_table

# MathJax is served from the book itself (no CDN: the book works offline). The npm registry's tarball, pinned by its
# integrity hash (`npm view mathjax@3.2.2 dist.integrity`).
MATHJAX_VERSION = "3.2.2"
MATHJAX_URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{MATHJAX_VERSION}.tgz"
MATHJAX_SHA512 = "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
# What tex-chtml.js loads at run time: TeX extensions, CHTML fonts, the menu and accessibility components.
MATHJAX_KEEP = ("tex-chtml.js", "input/tex/", "output/chtml/", "ui/", "a11y/", "sre/", "adaptors/")

COLAB_CELL = '''# Colab: install ssltutor (a no-op elsewhere)
import sys
if "google.colab" in sys.modules:
    %pip install -q "ssltutor @ git+{url}"'''


class BookError(RuntimeError):
    """The book could not be built; the message says which notebook or step failed and why."""


# ------------------------------------------------------------------------------------------------------------ config
def read_config(root: Path = ROOT) -> dict:
    return yaml.safe_load((Path(root) / "_config.yml").read_text())


def repository_url(root: Path = ROOT) -> str:
    """The repository URL: ``_config.yml``'s ``repository.url``, the one place it lives."""
    return read_config(root)["repository"]["url"].rstrip("/")


def colab_cell(root: Path = ROOT) -> str:
    """The exact Colab set-up cell every notebook starts with (its second cell, after the title)."""
    return COLAB_CELL.format(url=repository_url(root))


def toc_files(root: Path = ROOT) -> list[Path]:
    """Every page of ``_toc.yml`` (root first), as existing files relative to ``root``."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    names: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    names.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    files = []
    for name in names:
        matches = [Path(name + ext) for ext in ("", ".ipynb", ".md") if (Path(root) / (name + ext)).is_file()]
        if not matches:
            raise BookError(f"_toc.yml lists {name!r} but there is no {name}.ipynb or {name}.md")
        files.append(matches[0])
    return files


# ----------------------------------------------------------------------------------------------------------- mathjax
def ensure_mathjax(static_dir: Path | None = None, cache_dir: Path | None = None) -> Path:
    """A local MathJax 3 under ``book/_static/mathjax`` (``tex-chtml.js`` and what it loads); downloads the npm
    tarball once (into ``~/.cache/ssltutor``) when missing. Returns the folder."""
    target = Path(static_dir or ROOT / "book" / "_static") / "mathjax"
    if (target / "tex-chtml.js").is_file():
        return target
    cache = Path(cache_dir or os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ssltutor"
    tarball = cache / f"mathjax-{MATHJAX_VERSION}.tgz"
    if not tarball.is_file():
        try:
            with urllib.request.urlopen(MATHJAX_URL, timeout=120) as response:
                data = response.read()
        except OSError as err:
            raise BookError(f"MathJax is missing from {target} and could not be downloaded from {MATHJAX_URL} "
                            f"({err}): run `npm pack mathjax@{MATHJAX_VERSION}` elsewhere and copy the .tgz to "
                            f"{tarball}") from err
        digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != MATHJAX_SHA512:
            raise BookError(f"{MATHJAX_URL} does not have the expected sha512 (got {digest}): not installing it")
        cache.mkdir(parents=True, exist_ok=True)
        tarball.write_bytes(data)
    prefix = "package/es5/"
    target.parent.mkdir(parents=True, exist_ok=True)  # book/_static is not in git when it holds only MathJax
    tmp = Path(tempfile.mkdtemp(prefix="mathjax-", dir=target.parent))
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            name = member.name[len(prefix):] if member.name.startswith(prefix) else None
            if member.isfile() and name and name.startswith(MATHJAX_KEEP):
                path = tmp / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.extractfile(member).read())
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------------------------------------- execution
def _executed_copy(run_dir: Path, stem: str, dataset: str | None, seed: int) -> Path | None:
    """The executed ``stem`` notebook of a finished batch cell in ``run_dir``, seed ``seed``: of ``dataset`` if
    given, else of CIFAR-10 (where the methods differ most at small scale) if there, else the first dataset by name;
    None when the batch has none."""
    cells = sorted((run_dir / stem).glob(f"*-seed{seed}/metrics.json"))
    preferred = [c for c in cells if c.parent.name.startswith(f"{dataset or 'cifar10'}-")]
    if dataset is not None or preferred:
        cells = preferred
    return cells[0].parent / f"{stem}.ipynb" if cells else None


def _book_jobs(notebooks: list[Path], runs_dir: Path, from_run: Path | None, preset: str | None,
               threads: int | None = None) -> list[Job]:
    """One job per notebook: its defaults, except ``results_dir`` (with ``--from``) and ``preset`` (and then an
    ``output_dir`` under ``runs_dir``, so a preview build leaves no files in notebooks/) where given."""
    jobs = []
    for nb in notebooks:
        declared, params = notebook_parameters(nb), {}
        if from_run is not None and "results_dir" in declared:
            params["results_dir"] = str(from_run)
        if preset is not None and "preset" in declared:
            params["preset"] = preset
            if "output_dir" in declared:
                params["output_dir"] = str(runs_dir / nb.stem / "outputs")
        jobs.append(Job(nb, params, runs_dir / nb.stem, command="ssltutor book", threads=threads,
                        expect_metrics=False))
    return jobs


def execute_notebooks(notebooks: list[Path], runs_dir: Path, from_run: Path | None = None, dataset: str | None = None,
                      seed: int = 0, workers: int = 1, preset: str | None = None, log=print) -> dict[Path, Path]:
    """Executed copies of ``notebooks``: from ``from_run`` where it has one, else run now (defaults, or ``preset``;
    a results notebook gets ``results_dir=from_run``). Raises BookError listing every failing notebook, cell, error."""
    executed: dict[Path, Path] = {}
    to_run = []
    for nb in notebooks:
        found = _executed_copy(from_run, nb.stem, dataset, seed) if from_run is not None else None
        if found is not None:
            log(f"  {nb.stem}: executed copy from {found.parent}")
            executed[nb] = found
        else:
            to_run.append(nb)
    # several notebooks at once share the cores: each kernel gets its part (torch oversubscribed is slower)
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    jobs = _book_jobs(to_run, runs_dir, from_run, preset, threads)
    for job in jobs:
        if job.folder.exists():
            shutil.rmtree(job.folder)  # the book always shows a fresh run

    def report(job: Job, result: JobResult) -> None:
        log(f"  {job.notebook.stem}: {result.status} in {result.duration_s:.0f} s"
            + (f" (cell {result.cell}: {result.error})" if result.status == "failed" else ""))

    results = run_jobs(jobs, workers=workers, on_result=report)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        table = summary_table(failed).to_string(index=False)
        raise BookError(f"{len(failed)} notebook(s) failed; the executed copies show the failing cell:\n{table}")
    for job in jobs:
        executed[job.notebook] = job.folder / job.notebook.name
    return executed


# ----------------------------------------------------------------------------------------------------------- staging
def hide_injected_parameters(path: Path, target: Path) -> None:
    """Copy ``path`` to ``target`` with papermill's injected-parameters cell collapsed (``hide-cell``)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            cell.metadata["tags"] = [*tags, "hide-cell"]
    nbformat.write(nb, target)


def stage(root: Path, staging: Path, pages: list[Path], executed: dict[Path, Path]) -> None:
    """Book sources in ``staging``: config with execution off, toc, every folder the toc uses (without notebooks and
    their outputs), then the executed notebooks in place of the originals."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    config = read_config(root)
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (staging / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy2(root / "_toc.yml", staging / "_toc.yml")
    ignore = shutil.ignore_patterns("*.ipynb", "outputs", ".ipynb_checkpoints", "__pycache__")
    for folder in sorted({page.parts[0] for page in pages if len(page.parts) > 1} | {"book"}):
        if (root / folder).is_dir():
            shutil.copytree(root / folder, staging / folder, ignore=ignore, dirs_exist_ok=True)
    for page in pages:
        source = (root / page).resolve()
        if page.suffix == ".ipynb":
            hide_injected_parameters(executed[source], staging / page)
        elif not (staging / page).exists():
            (staging / page).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, staging / page)


def jupyter_book_command(staging: Path, output: Path) -> list[str]:
    """``jupyter-book build`` with warnings as errors (-W -n --keep-going: all warnings listed, then fail) and
    ``--all`` (an incremental build would not repeat the warnings of unchanged pages)."""
    exe = Path(sys.executable).with_name("jupyter-book")
    return [str(exe) if exe.exists() else "jupyter-book", "build", str(staging), "--path-output", str(output),
            "-W", "-n", "--keep-going", "--all", "--builder", "html"]


def build_book(root: Path = ROOT, from_run: Path | None = None, dataset: str | None = None, seed: int = 0,
               workers: int = 1, preset: str | None = None, output: Path | None = None, log=print) -> Path:
    """Execute (or collect) every notebook, stage, build. Returns ``<output>/_build/html/index.html``.

    ``output`` (default ``root``) holds ``_build``; ``preset`` (e.g. "smoke") runs every notebook at that preset
    instead of its default: a quick preview of the rendering, not the book."""
    root = Path(root).resolve()
    output = root if output is None else Path(output).resolve()
    from_run = None if from_run is None else Path(from_run).resolve()
    if from_run is not None and not from_run.is_dir():
        raise BookError(f"--from {from_run}: no such folder (a folder written by `ssltutor batch --output`)")
    if preset is not None:
        from .presets import PRESETS

        if preset not in PRESETS:
            raise BookError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    start = time.time()
    ensure_mathjax(root / "book" / "_static")
    pages = toc_files(root)
    notebooks = [(root / p).resolve() for p in pages if p.suffix == ".ipynb"]
    build = output / "_build"
    log(f"executing {len(notebooks)} notebook(s) into {build / 'book_runs'}")
    executed = execute_notebooks(notebooks, build / "book_runs", from_run, dataset, seed, workers, preset, log)
    log(f"notebooks ready after {time.time() - start:.0f} s; building the book")
    staging = build / "book_src"
    stage(root, staging, pages, executed)
    proc = subprocess.run(jupyter_book_command(staging, output), cwd=root, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    (build / "book.log").write_text(proc.stdout)
    if proc.returncode != 0:
        warnings = [line for line in proc.stdout.splitlines() if "WARNING" in line or "ERROR" in line]
        raise BookError(f"jupyter-book build failed (warnings are errors); full log in {build / 'book.log'}:\n"
                        + "\n".join(warnings[-40:] or proc.stdout.splitlines()[-40:]))
    index = build / "html" / "index.html"
    (build / "html" / "build.json").write_text(json.dumps({
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - start, 1),
        "from": None if from_run is None else str(from_run), "preset": preset}, indent=2))
    log(f"book written to {index} in {time.time() - start:.0f} s")
    return index
