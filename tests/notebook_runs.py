"""What the notebook tests share: the notebooks in the repository (found by glob, so new chapters are tested as they
arrive) and one smoke batch of every paper notebook on the three real subsets, run once per pytest session.

The batch lives in pytest's per-session temp folder and ``ssltutor batch`` is resumable, so the modules that need it
(test_notebooks: metrics of each run; test_book_browser: a preview book built ``--from`` it) call
:func:`smoke_batch` and only the first call executes anything.
"""
from __future__ import annotations

from pathlib import Path

from ssltutor.runs import JobResult, notebook_paths, paper_notebooks, plan_batch, run_jobs, write_results

ROOT = Path(__file__).resolve().parents[1]
REAL_DATASETS = ("intel_image", "cifar10", "aptos2019")
NOTEBOOKS = notebook_paths(ROOT / "notebooks")
PAPER_NOTEBOOKS = paper_notebooks(ROOT / "notebooks")
_results: dict[str, JobResult] = {}


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def smoke_batch(tmp_path_factory, data_root: Path) -> tuple[Path, dict[str, JobResult]]:
    """Every paper notebook x real dataset at preset smoke, seed 0; returns the batch folder and each run's result
    by ``<notebook stem>/<dataset>``."""
    folder = tmp_path_factory.getbasetemp() / "smoke_batch"
    if not _results:
        jobs = plan_batch(PAPER_NOTEBOOKS, list(REAL_DATASETS), [0], "smoke", folder, data_root=str(data_root),
                          command="pytest tests (smoke batch)")
        for job, result in zip(jobs, run_jobs(jobs)):
            _results[f"{job.notebook.stem}/{job.parameters['dataset']}"] = result
        write_results(folder)
    return folder, _results
