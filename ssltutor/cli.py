"""The ``ssltutor`` command: run one notebook, run a matrix of notebooks, build the book.

    ssltutor run notebooks/02_functional_knowledge_transfer.ipynb -p dataset cifar10 -p preset smoke --output runs/one
    ssltutor batch --datasets intel_image,cifar10,aptos2019 --data-root ../shared/data --preset cpu --seeds 0,1,2 \\
        --output runs/cpu
    ssltutor collect runs/cpu --into results/cpu   # add a batch's runs to a committed results folder
    ssltutor book                   # execute every notebook on its default (digits), then build _build/html
    ssltutor book --from runs/cpu   # use the notebooks a batch executed (first dataset, seed 0) and its results
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .runs import (
    Job,
    JobResult,
    ParameterError,
    check_data_root,
    check_parameters,
    collect_results,
    gather_results,
    notebook_parameters,
    paper_notebooks,
    plan_batch,
    finish_batch,
    record_batch,
    resolve_notebook,
    run_job,
    run_jobs,
    summary_table,
    write_results,
)


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _seeds(text: str) -> list[int]:
    """``0,1,2`` or ``0-4``."""
    seeds = []
    for item in _split(text):
        try:
            if "-" in item.lstrip("-"):
                low, high = item.split("-", 1)
                seeds.extend(range(int(low), int(high) + 1))
            else:
                seeds.append(int(item))
        except ValueError:
            raise ParameterError(f"--seeds {text!r}: give integers like 0,1,2 or a range like 0-4") from None
    return seeds


_ARGV: list[str] = []  # this invocation's arguments, recorded with every run


def _command() -> str:
    return "ssltutor " + " ".join(shlex.quote(a) for a in _ARGV)


def _print_failures(results: list[JobResult]) -> None:
    for r in results:
        if r.status == "failed":
            where = f"cell {r.cell}" if r.cell is not None else "before any cell failed"
            print(f"FAILED {r.name}: {where}: {r.error}\n    executed notebook: {r.notebook}", file=sys.stderr)


def cmd_run(args) -> int:
    nb = resolve_notebook(args.notebook)
    declared = notebook_parameters(nb)
    params = check_parameters(nb, dict(args.parameter or []), declared)
    output = Path(args.output).resolve()
    if "output_dir" in declared and "output_dir" not in params:
        params["output_dir"] = str(output)
    if "dataset" in params:
        check_data_root(params["dataset"], params.get("data_root"))
    job = Job(nb, params, output, command=_command(), kernel_name=args.kernel, expect_metrics=False)
    print(f"running {nb.name} with {params or 'its defaults'} -> {output / nb.name}", file=sys.stderr)
    result = run_job(job, progress_bar=not args.quiet)
    if result.status == "failed":
        _print_failures([result])
        return 1
    metrics = output / "metrics.json"
    print(f"done in {result.duration_s:.0f} s: {output / nb.name}" + (f", {metrics}" if metrics.is_file() else ""))
    return 0


def cmd_collect(args) -> int:
    counts = collect_results(Path(args.source), Path(args.into))
    print(f"{args.into}: {counts['added']} runs added, {counts['replaced']} replaced, {counts['kept']} kept; "
          f"{counts['invocations']} batch invocations added")
    return 0


def cmd_batch(args) -> int:
    notebooks = ([resolve_notebook(n) for n in _split(",".join(args.notebooks))] if args.notebooks
                 else paper_notebooks())
    extra = {}
    for key, value in args.parameter or []:
        extra[key] = value
    output = Path(args.output).resolve()
    gpus, workers = _gpus(args)
    threads = args.threads or (max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None)
    jobs = plan_batch(notebooks, _split(args.datasets), _seeds(args.seeds), args.preset, output,
                      data_root=args.data_root, device=args.device, extra=extra, command=_command(),
                      kernel_name=args.kernel, threads=threads)
    todo = [job for job in jobs if not job.done]
    print(f"{len(jobs)} runs ({len(notebooks)} notebooks x {len(_split(args.datasets))} datasets x "
          f"{len(_seeds(args.seeds))} seeds, preset {args.preset}) into {output}; "
          f"{len(jobs) - len(todo)} already done", file=sys.stderr)
    started = time.time()
    entry = record_batch(output, _command(), jobs, workers=workers)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="run", desc="batch", file=sys.stderr)
    counts = {"done": 0, "failed": 0}

    def progress(job: Job, result: JobResult) -> None:
        counts[result.status] = counts.get(result.status, 0) + 1
        bar.update(1)
        bar.set_postfix(failed=counts["failed"], last=job.name)

    results = run_jobs(todo, workers=workers, on_result=progress, gpus=gpus)
    bar.close()
    finish_batch(output, entry, results, time.time() - started)
    skipped = [JobResult(job.name, "skipped") for job in jobs if job.done and job not in todo]
    table = summary_table(skipped + results)
    print(table.to_string(index=False) if len(table) else "nothing to run")
    _print_failures(results)
    path = write_results(output)
    rows = gather_results(output)
    print(f"{len(rows)} result rows from {rows['run'].nunique() if len(rows) else 0} runs -> {path}")
    return 1 if any(r.status == "failed" for r in results) else 0


def _gpus(args) -> tuple[list[str] | None, int]:
    """``--gpus 0,1,...`` -> (the ids, workers: one per GPU unless --workers asks for fewer)."""
    if not args.gpus:
        return None, args.workers
    gpus = _split(args.gpus)
    if not gpus or len(set(gpus)) != len(gpus):
        raise ParameterError(f"--gpus {args.gpus!r}: give distinct GPU ids like 0,1,2,3")
    workers = len(gpus) if args.workers == 1 else args.workers
    if workers > len(gpus):
        raise ParameterError(f"--workers {workers} with --gpus {args.gpus}: each worker needs a GPU of its own; "
                             f"give at most {len(gpus)} workers or more GPU ids")
    if args.device not in ("auto", "cuda", "cuda:0"):
        raise ParameterError(f"--device {args.device} with --gpus: each notebook sees only its GPU, as cuda:0; "
                             "use --device auto or cuda")
    return gpus, workers


def cmd_book(args) -> int:
    from .book import build_book

    build_book(from_run=args.from_run, dataset=args.dataset, seed=args.seed, workers=args.workers,
               preset=args.preset, output=args.output, log=lambda msg: print(msg, file=sys.stderr))
    return 0


def parser() -> argparse.ArgumentParser:
    from .data import DATASETS
    from .presets import PRESETS

    p = argparse.ArgumentParser(prog="ssltutor", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"ssltutor {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    param = dict(action="append", nargs=2, metavar=("KEY", "VALUE"),
                 help="a notebook parameter (repeatable); checked against the notebook's parameters cell")
    run = sub.add_parser("run", help="execute one notebook with parameters (papermill)")
    run.add_argument("notebook", help="path, file name or stem prefix (e.g. 02) of a notebook in notebooks/")
    run.add_argument("-p", "--parameter", **param)
    run.add_argument("--output", required=True, help="folder for the executed notebook and its metrics.json")
    run.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    run.add_argument("--quiet", action="store_true", help="no per-cell progress bar")
    run.set_defaults(func=cmd_run)

    batch = sub.add_parser("batch", help="the notebook x dataset x seed matrix, resumable")
    batch.add_argument("--notebooks", nargs="+", default=None,
                       help="notebooks (paths, names or stem prefixes, comma- or space-separated); "
                            "default: every paper notebook (02-89)")
    batch.add_argument("--datasets", default="intel_image,cifar10,aptos2019",
                       help=f"comma-separated, from: {', '.join(DATASETS)}")
    batch.add_argument("--data-root", default=None,
                       help="folder holding the dataset folders (default: $DATA_ROOT); per dataset: "
                            "cifar10=DIR,DIR2 (DIR for cifar10, DIR2 for the others)")
    batch.add_argument("--preset", default="cpu", choices=list(PRESETS))
    batch.add_argument("--seeds", default="0,1,2", help="comma-separated seeds or a range, e.g. 0,1,2 or 0-4")
    batch.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    batch.add_argument("-p", "--parameter", **param)
    batch.add_argument("--output", required=True, help="the batch folder, e.g. runs/cpu (rerun it to resume)")
    batch.add_argument("--workers", type=int, default=1, help="notebooks run at once (separate processes)")
    batch.add_argument("--gpus", default=None,
                       help="comma-separated GPU ids (e.g. 0,1,2,3): one worker per GPU, each seeing only its own")
    batch.add_argument("--threads", type=int, default=None,
                       help="CPU threads per notebook kernel (OMP_NUM_THREADS; default: cores / workers)")
    batch.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    batch.set_defaults(func=cmd_batch)

    collect = sub.add_parser("collect", help="add a batch folder's runs to a results folder (e.g. results/cpu)")
    collect.add_argument("source", help="the batch folder (the --output of `ssltutor batch`)")
    collect.add_argument("--into", required=True,
                         help="the results folder: its results.csv, histories.csv and batch.json gain the batch's "
                              "runs (a run already there is replaced, every other run kept)")
    collect.set_defaults(func=cmd_collect)

    book = sub.add_parser("book", help="execute the notebooks and build the jupyter-book into _build/html")
    book.add_argument("--from", dest="from_run", default=None,
                      help="a batch folder (runs/NAME): show its executed notebooks and results instead of running")
    book.add_argument("--dataset", default=None, help="with --from: which dataset's run each chapter shows")
    book.add_argument("--seed", type=int, default=0, help="with --from: which seed's run each chapter shows")
    book.add_argument("--workers", type=int, default=1, help="notebooks executed at once")
    book.add_argument("--preset", default=None, choices=list(PRESETS),
                      help="run every notebook at this preset instead of its default (smoke: a quick preview)")
    book.add_argument("--output", default=None, help="folder for _build (default: the repository root)")
    book.set_defaults(func=cmd_book)
    return p


def main(argv: list[str] | None = None) -> int:
    _ARGV[:] = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(_ARGV)
    try:
        return args.func(args)
    except ParameterError as err:
        print(f"ssltutor {args.command}: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        from .book import BookError

        if isinstance(err, BookError):
            print(f"ssltutor book: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
