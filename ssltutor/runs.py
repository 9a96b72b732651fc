"""Parameterized notebook runs with papermill: one run (``ssltutor run``) or a resumable matrix (``ssltutor batch``).

A run of the matrix is a :class:`Job` (one notebook, one parameter set, one folder); :func:`run_job` executes it and
returns a :class:`JobResult` without touching any shared state, so jobs can run serially or in worker processes.
Every finished job leaves ``metrics.json`` (written by the notebook through ``ssltutor.studies.base.write_metrics``) in
its folder; a job whose folder already has one is skipped, which makes a batch resumable. :func:`gather_results`
collects every ``metrics.json`` under a batch folder into one long table (one row per variant and metric).

Layout of a batch folder::

    runs/NAME/batch.json                                   the commands that filled it, with date and machine
    runs/NAME/results.csv                                  every metrics.json, one row per (variant, metric)
    runs/NAME/<notebook>/<dataset>-<preset>-seed<k>/
        <notebook>.ipynb                                   the executed notebook (outputs, or the failing cell)
        metrics.json                                       written by the notebook's last cell: the job is done
        run.json                                           command, start, duration, status (and the error)
"""
from __future__ import annotations

import ast
import json
import multiprocessing
import os
import platform
import re
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# The parameters every paper notebook shares (the spec's parameters cell); the rest are paper-specific options.
COMMON_PARAMETERS = ("dataset", "data_root", "preset", "seed", "device", "output_dir")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# A parameter's comment like `# intel_image | cifar10 | aptos2019` lists its allowed values.
CHOICES_PATTERN = re.compile(r"^\s*[\w.+-]+(\s*\|\s*[\w.+-]+)+\s*$")


class ParameterError(ValueError):
    """A notebook name or parameter value that cannot run; the message lists what is allowed."""


# --------------------------------------------------------------------------------------------------------- notebooks
def notebook_paths(directory: Path = NOTEBOOKS) -> list[Path]:
    """Every chapter notebook (``NN_name.ipynb``) in ``directory``, sorted."""
    return sorted(p for p in Path(directory).glob("[0-9][0-9]_*.ipynb"))


def paper_notebooks(directory: Path = NOTEBOOKS) -> list[Path]:
    """The paper notebooks: numbers 02-89 (00-01 are foundations, 90+ results), each writes ``metrics.json``."""
    return [p for p in notebook_paths(directory) if 2 <= int(p.name[:2]) < 90]


def resolve_notebook(name: str | os.PathLike, directory: Path = NOTEBOOKS) -> Path:
    """A notebook from a path, a file name or a unique stem prefix (``02``, ``02_functional``)."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    stem = path.stem if path.suffix == ".ipynb" else str(name)
    candidates = [p for p in notebook_paths(directory) if p.stem == stem or p.stem.startswith(stem)]
    if len(candidates) == 1:
        return candidates[0]
    known = ", ".join(p.stem for p in notebook_paths(directory)) or "none"
    what = "matches several notebooks" if candidates else "is not a notebook"
    raise ParameterError(f"{name!r} {what}: give a path to an .ipynb file or one of: {known}")


@dataclass(frozen=True)
class Parameter:
    """One variable of a notebook's ``parameters`` cell, as papermill's inspector reports it."""
    name: str
    default: object
    help: str = ""

    @property
    def choices(self) -> list[str] | None:
        return [c.strip() for c in self.help.split("|")] if CHOICES_PATTERN.match(self.help or "") else None


def notebook_parameters(path: Path) -> dict[str, Parameter]:
    """The parameters cell of ``path`` (papermill.inspect_notebook), defaults evaluated as Python literals."""
    import papermill

    out = {}
    for name, info in papermill.inspect_notebook(str(path)).items():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            default = info["default"]  # an expression: keep its source, accept any value
        out[name] = Parameter(name, default, info.get("help") or "")
    return out


def relative_path_parameters(path: Path, declared: dict[str, Parameter] | None = None) -> dict[str, str]:
    """Parameters whose default is a path relative to the notebook's folder (``"../results/cpu"``), made absolute:
    pass them when a copy of the notebook runs from another folder."""
    declared = notebook_parameters(path) if declared is None else declared
    return {p.name: str((Path(path).parent / p.default).resolve()) for p in declared.values()
            if isinstance(p.default, str) and p.default.startswith(("./", "../"))}


# -------------------------------------------------------------------------------------------------------- parameters
def _convert(value: object, param: Parameter, notebook: str) -> object:
    """``value`` (a string from the command line, or already typed) as the type of ``param``'s default."""
    default, text = param.default, value if isinstance(value, str) else repr(value)
    where = f"{notebook}: parameter {param.name}"
    if default is None:  # an optional value (e.g. data_root): None or a string
        return None if text in ("None", "none", "null", "") else (value if isinstance(value, str) else text)
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ParameterError(f"{where} expects true or false, got {text!r}")
    if isinstance(default, int):
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        raise ParameterError(f"{where} expects an integer (default {default!r}), got {text!r}")
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{where} expects a number (default {default!r}), got {text!r}") from None
    if isinstance(default, str):
        return text
    if isinstance(default, (list, tuple, dict)):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ParameterError(f"{where} expects a Python {type(default).__name__} literal, got {text!r}") from None
        if not isinstance(parsed, type(default)):
            raise ParameterError(f"{where} expects a {type(default).__name__}, got {text!r}")
        return parsed
    return value  # a default papermill could not evaluate (an expression): pass the value through


def _check_value(name: str, value: object, param: Parameter, notebook: str) -> None:
    """Values with a known domain: datasets, presets, devices, seeds, and any `# a | b | c` comment."""
    from .data import DATASETS
    from .presets import PRESET_CHOICES

    where = f"{notebook}: {name}={value!r}"
    allowed: Iterable[str] | None = None
    if name == "dataset":
        allowed = DATASETS
    elif name == "preset":
        allowed = PRESET_CHOICES  # the presets' names and "auto" (colab in a Colab GPU session, else cpu)
    elif param.choices is not None:
        allowed = param.choices
    if allowed is not None and value not in allowed:
        raise ParameterError(f"{where} is not allowed: choose one of {', '.join(allowed)}")
    if name == "device" and not DEVICE_PATTERN.match(str(value)):
        raise ParameterError(f"{where} is not a device: use auto, cpu, cuda, cuda:N or mps")
    if name == "seed" and isinstance(value, int) and value < 0:
        raise ParameterError(f"{where}: a seed is a non-negative integer")


def check_parameters(path: Path, values: dict[str, object], declared: dict[str, Parameter] | None = None) -> dict:
    """``values`` converted to the types of ``path``'s parameters cell and checked; raises ParameterError otherwise."""
    declared = notebook_parameters(path) if declared is None else declared
    if not declared:
        if values:
            raise ParameterError(f"{path.name} has no cell tagged 'parameters': it takes no parameters")
        return {}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ParameterError(f"{path.name} has no parameter(s) {', '.join(unknown)}: its parameters are "
                             + ", ".join(f"{p.name} (default {p.default!r})" for p in declared.values()))
    out = {}
    for name, value in values.items():
        out[name] = _convert(value, declared[name], path.name)
        _check_value(name, out[name], declared[name], path.name)
    return out


def check_data_root(dataset: str, data_root: str | None) -> None:
    """Fail before any notebook starts when the dataset folder is missing (digits is bundled with scikit-learn)."""
    from .data import default_root, sources

    if dataset == "digits" or dataset not in sources.FOLDERS:  # unknown names are _check_value's job
        return
    folder = sources._dataset_dir(dataset, data_root) if data_root else default_root(dataset)
    if not folder.is_dir():
        raise ParameterError(f"dataset {dataset!r}: no folder {folder}; pass --data-root (the folder holding "
                             f"{' or '.join(sources.FOLDERS[dataset])}) or set DATA_ROOT")


def data_roots(value: str | dict | None, datasets: list[str]) -> dict[str, str | None]:
    """Each dataset's data folder (resolved), from one folder for all, ``None`` ($DATA_ROOT), a dict
    ``{dataset: folder, None: folder for the rest}`` or its command-line form ``"cifar10=DIR,DIR2"`` (entries
    separated by commas; ``name=DIR`` for one dataset, a bare ``DIR`` for the others). A name that is not among
    ``datasets``, or two folders for one dataset, raise a :class:`ParameterError`."""
    if isinstance(value, dict):
        roots = dict(value)
    elif value is None or not {"=", ","} & set(str(value)):
        roots = {None: value}
    else:
        roots = {}
        for entry in (e.strip() for e in str(value).split(",") if e.strip()):
            name, sep, folder = entry.rpartition("=")
            key = name.strip() if sep else None
            if key in roots:
                what = f"dataset {key!r}" if key else "the other datasets"
                raise ParameterError(f"--data-root gives two folders for {what}: {roots[key]} and {folder}")
            roots[key] = folder
    named = sorted(k for k in roots if k is not None and k not in datasets)
    if named:
        raise ParameterError(f"--data-root names {', '.join(named)}, which the batch does not run (datasets: "
                             f"{', '.join(datasets)}): drop the entry or add the dataset to --datasets")

    def resolved(folder):
        return None if folder is None else str(Path(folder).expanduser().resolve())

    return {d: resolved(roots.get(d, roots.get(None))) for d in datasets}


# -------------------------------------------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One cell of the matrix: run ``notebook`` with ``parameters``, executed copy and metrics in ``folder``."""
    notebook: Path
    parameters: dict
    folder: Path
    command: str = ""
    kernel_name: str | None = None
    threads: int | None = None   # OMP/torch threads of the kernel (set when several jobs share the CPU)
    expect_metrics: bool = True  # a batch cell is done when metrics.json exists (False: always run, e.g. the book)

    @property
    def name(self) -> str:
        return f"{self.notebook.stem}/{self.folder.name}"

    @property
    def done(self) -> bool:
        return self.expect_metrics and (self.folder / "metrics.json").is_file()


@dataclass
class JobResult:
    name: str
    status: str                  # "done", "skipped" (metrics.json already there) or "failed"
    duration_s: float = 0.0
    cell: int | None = None      # index of the failing cell in the source notebook (0-based), when a cell failed
    error: str = ""              # "ename: evalue" of the failing cell, or the exception that stopped the run
    notebook: str = ""           # the executed notebook, where the failing cell can be read
    extra: dict = field(default_factory=dict)


def run_job(job: Job, progress_bar: bool = False) -> JobResult:
    """Execute ``job`` with papermill (cwd = the notebook's folder, like the book). Never raises for a notebook error:
    the failing cell and its error are returned and written to ``run.json``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if job.done:
        return JobResult(job.name, "skipped", notebook=str(job.folder / job.notebook.name))
    job.folder.mkdir(parents=True, exist_ok=True)
    output = job.folder / job.notebook.name
    info = {"command": job.command, "notebook": str(job.notebook), "parameters": job.parameters,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine()}
    saved_env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if job.threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(job.threads)
    start = time.time()
    result = JobResult(job.name, "done", notebook=str(output))
    try:
        papermill.execute_notebook(str(job.notebook), str(output), parameters=job.parameters,
                                   cwd=str(job.notebook.parent), kernel_name=job.kernel_name,
                                   progress_bar=progress_bar, log_output=False,
                                   # the kernel's own log (not cell output): its start-up warnings would garble
                                   # the progress bar; its errors still show
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"])
        if job.expect_metrics and not job.done:
            result.status, result.error = "failed", "the notebook finished without writing metrics.json"
    except PapermillExecutionError as err:
        result.status, result.error = "failed", f"{err.ename}: {err.evalue}"
        result.cell = source_cell_index(output, err.cell_index)
        info["source"] = err.source
    except Exception as err:  # kernel died, bad notebook file, ...: report it like a cell error
        result.status, result.error = "failed", f"{type(err).__name__}: {err}"
        info["traceback"] = traceback.format_exc()
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    result.duration_s = round(time.time() - start, 1)
    info.update(status=result.status, duration_s=result.duration_s, cell=result.cell, error=result.error)
    (job.folder / "run.json").write_text(json.dumps(info, indent=2, default=str))
    return result


def source_cell_index(executed: Path, index: int) -> int:
    """The index in the source notebook of cell ``index`` of its executed copy (papermill inserts one cell)."""
    import nbformat

    try:
        cells = nbformat.read(executed, as_version=4).cells
    except Exception:  # the executed copy could not be written: keep papermill's index
        return index
    # papermill's index counts its injected cell, not the error banners it adds to the copy afterwards
    executed_cells = [c for c in cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    return index - sum("injected-parameters" in c.metadata.get("tags", []) for c in executed_cells[:index])


def run_jobs(jobs: list[Job], workers: int = 1, on_result: Callable[[Job, JobResult], None] | None = None,
             gpus: list[str] | None = None) -> list[JobResult]:
    """Run ``jobs`` (serially, or in ``workers`` processes); ``on_result`` is called as each finishes.
    ``gpus``: one GPU id per worker (at least ``workers`` of them); each worker process and the kernels it starts
    see only their own GPU (``CUDA_VISIBLE_DEVICES``), as ``cuda:0``."""
    results: dict[int, JobResult] = {}

    def finished(i: int, result: JobResult) -> None:
        results[i] = result
        if on_result is not None:
            on_result(jobs[i], result)

    if workers <= 1 and not gpus:
        for i, job in enumerate(jobs):
            finished(i, run_job(job))
    else:
        # spawn, not fork: the parent may hold torch thread pools (or CUDA) that a forked child must not inherit
        context = multiprocessing.get_context("spawn")
        per_gpu = {}
        if gpus:
            free = context.Queue()
            for gpu in gpus:
                free.put(str(gpu))
            per_gpu = dict(initializer=_claim_gpu, initargs=(free,))
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, **per_gpu) as pool:
            futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    finished(i, future.result())
                except Exception as err:  # the worker process itself died
                    finished(i, JobResult(jobs[i].name, "failed", error=f"{type(err).__name__}: {err}"))
    return [results[i] for i in range(len(jobs))]


def _claim_gpu(free) -> None:
    """Worker initializer: take the next free GPU id; this worker and its notebook kernels see only that one."""
    os.environ["CUDA_VISIBLE_DEVICES"] = free.get()


def machine() -> str:
    """A one-line description of this machine, stored with every run."""
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.node()}: {platform.platform()}, {os.cpu_count()} CPU cores{gpu}, Python {sys.version.split()[0]}"


# ------------------------------------------------------------------------------------------------------------- batch
def plan_batch(notebooks: list[Path], datasets: list[str], seeds: list[int], preset: str, output: Path,
               data_root: str | dict | None = None, device: str = "auto", extra: dict | None = None, command: str = "",
               kernel_name: str | None = None, threads: int | None = None) -> list[Job]:
    """The notebook x dataset x seed matrix as jobs, every parameter checked against every notebook first.

    ``data_root``: one folder for every dataset, or per dataset (:func:`data_roots`: ``"cifar10=DIR,DIR2"`` or
    ``{"cifar10": DIR, None: DIR2}``, None the folder of the others).

    ``extra`` holds further parameters (e.g. ``ssl_method``) given to the notebooks that declare them."""
    if not notebooks:
        raise ParameterError("no notebooks to run: pass --notebooks (names or paths)")
    if not datasets or not seeds:
        raise ParameterError("give at least one dataset (--datasets) and one seed (--seeds)")
    from .data import DATASETS

    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise ParameterError(f"unknown dataset(s) {', '.join(unknown)}: choose one of {', '.join(DATASETS)}")
    roots = data_roots(data_root, datasets)
    for dataset in datasets:
        check_data_root(dataset, roots[dataset])
    output = Path(output).resolve()
    jobs = []
    for nb in notebooks:
        declared = notebook_parameters(nb)
        missing = [k for k in ("dataset", "preset", "seed", "output_dir") if k not in declared]
        if missing:
            raise ParameterError(f"{nb.name} cannot run in a batch: its parameters cell lacks {', '.join(missing)}")
        options = {k: v for k, v in (extra or {}).items() if k in declared}
        for dataset in datasets:
            for seed in seeds:
                folder = output / nb.stem / f"{dataset}-{preset}-seed{seed}"
                values = {"dataset": dataset, "preset": preset, "seed": seed, "device": device, **options}
                if "data_root" in declared:
                    values["data_root"] = roots[dataset]
                values = {k: v for k, v in values.items() if k in declared}
                params = check_parameters(nb, values, declared)
                params["output_dir"] = str(folder)
                jobs.append(Job(nb, params, folder, command=command, kernel_name=kernel_name, threads=threads))
    unused = sorted(set(extra or {}) - {k for nb in notebooks for k in notebook_parameters(nb)})
    if unused:
        raise ParameterError(f"no notebook takes parameter(s) {', '.join(unused)}")
    return jobs


def record_batch(output: Path, command: str, jobs: list[Job], workers: int = 1) -> int:
    """Append this invocation (command, date, machine, matrix size, workers) to ``output/batch.json``; returns its
    index there, for :func:`finish_batch`."""
    output.mkdir(parents=True, exist_ok=True)
    path = output / "batch.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    history.append({"command": command, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                    "jobs": len(jobs), "already_done": sum(job.done for job in jobs), "workers": workers})
    path.write_text(json.dumps(history, indent=2))
    return len(history) - 1


def finish_batch(output: Path, index: int, results: list[JobResult], wall_s: float) -> None:
    """Complete entry ``index`` of ``output/batch.json`` when the invocation ends: when it finished, its wall time,
    and how many runs it ran and how many of them failed (an invocation killed before this has none of these)."""
    path = Path(output) / "batch.json"
    history = json.loads(path.read_text())
    history[index].update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_s=round(wall_s, 1),
                          ran=sum(r.status != "skipped" for r in results),
                          failed=sum(r.status == "failed" for r in results))
    path.write_text(json.dumps(history, indent=2))


RESULT_COLUMNS = ["notebook", "dataset", "preset", "seed", "options", "variant", "metric", "value", "duration_s",
                  "device", "ssltutor", "torch", "python", "platform", "cuda", "command", "run", "train_images",
                  "test_images"]
HISTORY_COLUMNS = ["notebook", "dataset", "preset", "seed", "options", "variant", "epoch", "metric", "value", "run"]


def _run_base(path: Path, record: dict, output: Path) -> dict:
    """The columns every row of one run shares: which notebook, dataset, preset, seed and options it was."""
    params = record.get("params", {})
    options = {k: v for k, v in params.items() if k not in COMMON_PARAMETERS}
    return {"notebook": record.get("notebook"), "dataset": params.get("dataset"), "preset": params.get("preset"),
            "seed": params.get("seed"), "options": json.dumps(options, sort_keys=True) if options else "",
            "run": str(path.parent.relative_to(output))}


def _metrics_records(output: Path) -> list[tuple[Path, dict]]:
    """Every ``metrics.json`` under ``output``, read once: (path, record) in path order."""
    return [(path, json.loads(path.read_text())) for path in sorted(Path(output).rglob("metrics.json"))]


def gather_results(output: Path, records: list[tuple[Path, dict]] | None = None) -> pd.DataFrame:
    """Every ``metrics.json`` under ``output`` as one long table (columns ``RESULT_COLUMNS``); ``records``: those
    files already read (:func:`_metrics_records`)."""
    output = Path(output)
    rows = []
    for path, record in _metrics_records(output) if records is None else records:
        env = record.get("environment", {})
        images = record.get("images", {})
        run_info = path.with_name("run.json")
        command = json.loads(run_info.read_text()).get("command") if run_info.is_file() else record.get("command")
        base = {**_run_base(path, record, output), "duration_s": record.get("duration_s"),
                "device": record.get("device"), "ssltutor": env.get("ssltutor"), "torch": env.get("torch"),
                "python": env.get("python"), "platform": env.get("platform"), "cuda": env.get("cuda"),
                "command": command, "train_images": images.get("train"), "test_images": images.get("test")}
        for variant, metrics in record.get("results", {}).items():
            for metric, value in metrics.items():
                rows.append({**base, "variant": variant, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def gather_histories(output: Path, records: list[tuple[Path, dict]] | None = None) -> pd.DataFrame:
    """The per-epoch histories of every ``metrics.json`` under ``output`` (``histories``: {variant: {metric:
    [value per epoch]}}) as one long table (columns ``HISTORY_COLUMNS``; ``epoch`` from 1, or the history's own
    ``epoch`` column)."""
    output = Path(output)
    rows = []
    for path, record in _metrics_records(output) if records is None else records:
        base = _run_base(path, record, output)
        for variant, columns in record.get("histories", {}).items():
            epochs = columns.get("epoch") or list(range(1, 1 + max(map(len, columns.values()), default=0)))
            for metric, values in columns.items():
                if metric != "epoch":
                    rows += [{**base, "variant": variant, "epoch": e, "metric": metric, "value": v}
                             for e, v in zip(epochs, values)]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def write_results(output: Path) -> Path:
    """Gather ``output``'s metrics into ``output/results.csv`` and their per-epoch histories into
    ``output/histories.csv``; returns the path of results.csv."""
    path = Path(output) / "results.csv"
    records = _metrics_records(output)  # each metrics.json read once for both tables
    gather_results(output, records).to_csv(path, index=False)
    gather_histories(output, records).to_csv(path.with_name("histories.csv"), index=False)
    return path


def collect_results(source: Path, into: Path) -> dict:
    """Merge batch folder ``source`` into results folder ``into`` (e.g. ``runs/cpu`` into ``results/cpu``):
    ``results.csv`` and ``histories.csv`` get ``source``'s runs, replacing the rows of any run already there and
    keeping every other run; ``batch.json`` gets ``source``'s invocations (one already there, same command and
    date, is updated). So a matrix filled over several machines, each starting from an empty batch folder, adds up
    in one committed folder. Returns counts: runs added, replaced, kept, and invocations added."""
    source, into = Path(source), Path(into)
    records = _metrics_records(source)
    if not records:
        raise ParameterError(f"{source} holds no metrics.json: give the --output folder of an `ssltutor batch` "
                             "that finished at least one run")
    into.mkdir(parents=True, exist_ok=True)
    new = {"results.csv": gather_results(source, records), "histories.csv": gather_histories(source, records)}
    runs = set(new["results.csv"]["run"])
    olds = {name: pd.read_csv(into / name) if (into / name).is_file() else frame.iloc[:0]
            for name, frame in new.items()}
    for name, old in olds.items():  # every table checked before any is written
        if list(old.columns) != list(new[name].columns):
            raise ParameterError(f"{into / name} has columns {list(old.columns)}, not this version's "
                                 f"{list(new[name].columns)}: collect into an empty folder instead (nothing was "
                                 "written)")
    before = set(olds["results.csv"]["run"])
    counts = {"added": len(runs - before), "replaced": len(runs & before), "kept": len(before - runs)}
    for name, frame in new.items():
        kept = olds[name][~olds[name]["run"].isin(runs)]
        merged = pd.concat([kept, frame], ignore_index=True) if len(kept) else frame
        merged.sort_values(["run"], kind="stable").to_csv(into / name, index=False)
    batches, path = [], into / "batch.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    if (source / "batch.json").is_file():
        batches = json.loads((source / "batch.json").read_text())
    known = {(b.get("command"), b.get("date")): i for i, b in enumerate(history)}
    for entry in batches:
        key = (entry.get("command"), entry.get("date"))
        if key in known:
            history[known[key]] = entry
        else:
            history.append(entry)
    path.write_text(json.dumps(history, indent=2))
    counts["invocations"] = sum((b.get("command"), b.get("date")) not in known for b in batches)
    return counts


def summary_table(results: list[JobResult]) -> pd.DataFrame:
    """One row per job: status, duration, and for failures the failing cell and its error."""
    return pd.DataFrame([{"job": r.name, "status": r.status, "seconds": r.duration_s,
                          "cell": "" if r.cell is None else r.cell, "error": r.error[:160]} for r in results])

