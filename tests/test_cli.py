"""The ``ssltutor`` command on small stand-in notebooks: parameter checks before anything runs, the batch matrix
(failures reported with their cell, the others still run, resumable), results.csv, and the MathJax install."""
from __future__ import annotations

import functools
import json

import nbformat
import pandas as pd
import papermill
import pytest

from ssltutor import cli
from ssltutor.book import (
    COLAB_CELL,
    colab_cell,
    ensure_mathjax,
    repository_url,
    toc_files,
)
from ssltutor.studies.base import write_metrics
from ssltutor.runs import (
    RESULT_COLUMNS,
    ParameterError,
    check_parameters,
    data_roots,
    gather_results,
    notebook_parameters,
    plan_batch,
    relative_path_parameters,
    resolve_notebook,
)

PARAMETERS = '''dataset = "digits"  # intel_image | cifar10 | aptos2019 | cifar100 | digits
data_root = None
preset = "cpu"
seed = 0
device = "auto"
output_dir = "outputs/02_standin"
mode = "plain"  # plain | fancy
scale = 1.0
flag = False
results_dir = "../results/cpu"'''

BODY = '''if dataset == "digits" and seed == 1:
    raise RuntimeError("deliberate failure")'''

METRICS = '''import time
from ssltutor.studies.base import write_metrics
params = dict(dataset=dataset, data_root=data_root, preset=preset, seed=seed, device=device, output_dir=output_dir,
              mode=mode)
write_metrics(output_dir, "02_standin", params, {"plain": {"accuracy": 0.5 + seed / 10}, "fancy": {"accuracy": 0.7}},
              started=time.time() - 1)'''


@pytest.fixture
def standin(tmp_path):
    """A paper-like notebook: the Colab cell, a parameters cell, a cell that fails for (digits, seed 1), metrics."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Stand-in"), nbformat.v4.new_code_cell(colab_cell()),
                nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(BODY), nbformat.v4.new_code_cell(METRICS)]
    folder = tmp_path / "notebooks"
    folder.mkdir()
    path = folder / "02_standin.ipynb"
    nbformat.write(nb, path)
    return path


def test_parameters_cell_is_read_with_types_and_choices(standin):
    declared = notebook_parameters(standin)
    assert declared["seed"].default == 0 and declared["data_root"].default is None
    assert declared["mode"].choices == ["plain", "fancy"]
    assert declared["dataset"].choices[0] == "intel_image"
    given = {"seed": "3", "scale": "0.5", "flag": "true", "data_root": "/x", "mode": "fancy"}
    values = check_parameters(standin, given)
    assert values == {"seed": 3, "scale": 0.5, "flag": True, "data_root": "/x", "mode": "fancy"}
    assert relative_path_parameters(standin) == {"results_dir": str((standin.parent / "../results/cpu").resolve())}


@pytest.mark.parametrize("args,expected", [
    (["-p", "seed", "x"], "expects an integer"),
    (["-p", "scale", "big"], "expects a number"),
    (["-p", "flag", "maybe"], "expects true or false"),
    (["-p", "dataset", "mnist"], "choose one of digits, cifar10, cifar100, intel_image, aptos2019"),
    (["-p", "preset", "huge"], "choose one of smoke, cpu, colab, paper, auto"),
    (["-p", "mode", "odd"], "choose one of plain, fancy"),
    (["-p", "device", "tpu"], "use auto, cpu, cuda, cuda:N or mps"),
    (["-p", "seed", "-1"], "non-negative"),
    (["-p", "epochs", "3"], "has no parameter(s) epochs: its parameters are dataset (default 'digits')"),
    (["-p", "dataset", "cifar10", "-p", "data_root", "/nowhere"], "no folder /nowhere"),
])
def test_run_rejects_bad_parameters_before_running(standin, tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    assert cli.main(["run", str(standin), *args, "--output", str(out)]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists(), "nothing may start when a parameter is wrong"


def test_unknown_notebook_lists_the_known_ones(capsys):
    with pytest.raises(ParameterError, match="is not a notebook: give a path"):
        resolve_notebook("no_such_chapter")
    assert cli.main(["batch", "--notebooks", "no_such_chapter", "--output", "/tmp/never"]) == 2


def test_batch_rejects_a_bad_dataset_among_good_ones(standin, tmp_path, capsys, shared_data):
    out = tmp_path / "runs"
    code = cli.main(["batch", "--notebooks", str(standin), "--datasets", "digits,imagenet", "--seeds", "0",
                     "--data-root", str(shared_data), "--output", str(out)])
    assert code == 2 and "choose one of digits, cifar10" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):  # argparse: the preset has a fixed list of choices
        cli.main(["batch", "--notebooks", str(standin), "--preset", "huge", "--output", str(out)])
    assert cli.main(["batch", "--notebooks", str(standin), "--seeds", "0,a", "--output", str(out)]) == 2


def test_data_root_per_dataset(standin, tmp_path, shared_data):
    big, small = str(shared_data / "cifar10_20k"), str(shared_data)
    assert data_roots(None, ["cifar10"]) == {"cifar10": None}
    assert data_roots(small, ["cifar10", "digits"]) == {"cifar10": small, "digits": small}
    both = data_roots(f"cifar10={big},{small}", ["cifar10", "cifar100"])
    assert both == {"cifar10": big, "cifar100": small}
    assert data_roots({"cifar10": big}, ["cifar10", "digits"]) == {"cifar10": big, "digits": None}
    with pytest.raises(ParameterError, match="names intel_image, which the batch does not run"):
        data_roots(f"intel_image={small}", ["cifar10"])
    with pytest.raises(ParameterError, match="two folders for dataset 'cifar10'"):
        data_roots(f"cifar10={big},cifar10={small}", ["cifar10"])
    jobs = plan_batch([standin], ["cifar10", "cifar100"], [0], "smoke", tmp_path, data_root=f"cifar10={big},{small}")
    assert {j.parameters["dataset"]: j.parameters["data_root"] for j in jobs} == both
    with pytest.raises(ParameterError, match="dataset 'cifar100': no folder"):
        plan_batch([standin], ["cifar100"], [0], "smoke", tmp_path, data_root=f"cifar100={big}")


def test_batch_runs_the_matrix_reports_failures_and_resumes(standin, tmp_path, capsys, shared_data):
    out = tmp_path / "runs" / "demo"
    argv = ["batch", "--notebooks", str(standin), "--datasets", "digits,cifar100", "--seeds", "0,1",
            "--data-root", str(shared_data), "--preset", "smoke", "--output", str(out)]
    assert cli.main([*argv, "--workers", "2"]) == 1  # (digits, seed 1) fails; the other three still run
    captured = capsys.readouterr()
    assert "FAILED 02_standin/digits-smoke-seed1: cell 3: RuntimeError: deliberate failure" in captured.err
    assert "failed" in captured.out and "done" in captured.out
    done = sorted(p.parent.name for p in out.rglob("metrics.json"))
    assert done == ["cifar100-smoke-seed0", "cifar100-smoke-seed1", "digits-smoke-seed0"]
    failed = json.loads((out / "02_standin" / "digits-smoke-seed1" / "run.json").read_text())
    assert failed["status"] == "failed" and failed["cell"] == 3 and "deliberate" in failed["error"]
    assert (out / "02_standin" / "digits-smoke-seed1" / "02_standin.ipynb").is_file()  # shows the failing cell

    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert len(results) == 3 * 2  # three runs x two variants x one metric
    row = results[(results.dataset == "cifar100") & (results.seed == 1) & (results.variant == "plain")].iloc[0]
    assert row.value == pytest.approx(0.6) and row.preset == "smoke" and row.metric == "accuracy"
    assert json.loads(row.options) == {"mode": "plain"} and row.command.startswith("ssltutor batch")
    assert row.device == "cpu" and row.torch and row.duration_s >= 1

    stamps = {p: p.stat().st_mtime for p in out.rglob("metrics.json")}
    assert cli.main(argv) == 1  # resumed: only the failed run runs again
    captured = capsys.readouterr()
    assert "3 already done" in captured.err and captured.out.count("skipped") == 3
    assert stamps == {p: p.stat().st_mtime for p in out.rglob("metrics.json")}
    batches = json.loads((out / "batch.json").read_text())
    assert len(batches) == 2 and all(b["command"].startswith("ssltutor batch") and b["machine"] for b in batches)
    # each invocation is completed when it ends: its wall time, what it ran and what failed
    assert [(b["ran"], b["failed"], b["workers"]) for b in batches] == [(4, 1, 2), (1, 1, 1)]
    assert all(b["wall_s"] > 0 and b["finished"] >= b["date"] for b in batches)


def test_run_executes_one_notebook(standin, tmp_path, capsys):
    out = tmp_path / "one"
    assert cli.main(["run", str(standin), "-p", "mode", "fancy", "-p", "seed", "2", "--output", str(out),
                     "--quiet"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["params"]["mode"] == "fancy" and record["params"]["output_dir"] == str(out)
    assert record["results"]["plain"]["accuracy"] == pytest.approx(0.7)
    assert (out / "02_standin.ipynb").is_file()


def test_gather_results_reads_write_metrics(tmp_path):
    for seed in (0, 1):
        folder = tmp_path / "03_x" / f"cifar10-cpu-seed{seed}"
        write_metrics(folder, "03_x", {"dataset": "cifar10", "preset": "cpu", "seed": seed, "device": "cpu",
                                       "output_dir": str(folder), "ssl_method": "byol"},
                      {"a": {"accuracy": 0.4, "kappa_quadratic": None}}, started=0.0)
    frame = gather_results(tmp_path)
    assert len(frame) == 4 and set(frame.metric) == {"accuracy", "kappa_quadratic"}
    assert frame["options"].unique().tolist() == ['{"ssl_method": "byol"}']
    assert frame["run"].tolist()[0] == "03_x/cifar10-cpu-seed0"


def test_metrics_record_images_settings_and_histories(tmp_path):
    from ssltutor.runs import gather_histories, write_results

    folder = tmp_path / "04_x" / "cifar10-cpu-seed2"
    history = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.5], "knn_acc": [0.3, float("nan")],
                            "note": ["a", "b"]})
    write_metrics(folder, "04_x", {"dataset": "cifar10", "preset": "cpu", "seed": 2, "device": "cpu",
                                   "output_dir": str(folder)},
                  {"simclr": {"knn": 0.4}}, data={"train": 20_000, "test": list(range(10))},
                  settings={"crop_scale": (0.2, 1.0), "epochs": 3}, histories={"simclr": history})
    record = json.loads((folder / "metrics.json").read_text())
    assert record["images"] == {"train": 20_000, "test": 10}
    assert record["settings"] == {"crop_scale": [0.2, 1.0], "epochs": 3}
    assert record["histories"]["simclr"] == {"epoch": [1.0, 2.0], "loss": [2.0, 1.5], "knn_acc": [0.3, None]}
    results = pd.read_csv(write_results(tmp_path))
    assert results["train_images"].unique().tolist() == [20_000] and results["test_images"].unique().tolist() == [10]
    histories = pd.read_csv(tmp_path / "histories.csv")
    assert len(histories) == len(gather_histories(tmp_path)) == 4  # loss and knn_acc, 2 epochs; text dropped
    loss = histories[histories.metric == "loss"]
    assert loss["epoch"].tolist() == [1, 2] and loss["value"].tolist() == [2.0, 1.5]
    assert set(histories["run"]) == {"04_x/cifar10-cpu-seed2"} and set(histories["seed"]) == {2}


def _batch_folder(root, runs, invocation):
    """A batch folder as `ssltutor batch` leaves it: runs {(notebook, seed): accuracy}, one batch.json entry."""
    for (notebook, seed), accuracy in runs.items():
        folder = root / notebook / f"cifar10-cpu-seed{seed}"
        write_metrics(folder, notebook, {"dataset": "cifar10", "preset": "cpu", "seed": seed, "device": "cpu",
                                         "output_dir": str(folder)}, {"a": {"accuracy": accuracy}}, started=0.0,
                      histories={"a": pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0]})})
    (root / "batch.json").write_text(json.dumps([invocation]))
    return root


def test_collect_adds_a_batch_to_a_results_folder_and_keeps_the_rest(tmp_path, capsys):
    first = {"command": "ssltutor batch --seeds 0", "date": "2026-12-01T10:00:00+0000", "jobs": 2}
    _batch_folder(tmp_path / "machine1", {("03_x", 0): 0.5, ("04_x", 0): 0.6}, first)
    into = tmp_path / "results"
    assert cli.main(["collect", str(tmp_path / "machine1"), "--into", str(into)]) == 0
    assert "2 runs added, 0 replaced, 0 kept; 1 batch invocations added" in capsys.readouterr().out
    # a later machine starts from an empty batch folder: its runs are added, a rerun one replaced, the rest kept
    second = {"command": "ssltutor batch --seeds 1", "date": "2026-12-02T10:00:00+0000", "jobs": 2}
    _batch_folder(tmp_path / "machine2", {("03_x", 1): 0.7, ("04_x", 0): 0.65}, second)
    assert cli.main(["collect", str(tmp_path / "machine2"), "--into", str(into)]) == 0
    assert "1 runs added, 1 replaced, 1 kept; 1 batch invocations added" in capsys.readouterr().out
    results = pd.read_csv(into / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert dict(zip(results["run"], results["value"])) == {
        "03_x/cifar10-cpu-seed0": 0.5, "03_x/cifar10-cpu-seed1": 0.7, "04_x/cifar10-cpu-seed0": 0.65}
    histories = pd.read_csv(into / "histories.csv")
    assert histories.groupby("run").size().to_dict() == {run: 2 for run in results["run"]}
    assert [b["command"] for b in json.loads((into / "batch.json").read_text())] == [first["command"],
                                                                                     second["command"]]
    # collecting the same batch again after it finished updates its invocation instead of adding one
    _batch_folder(tmp_path / "machine2", {}, {**second, "finished": "2026-12-02T11:00:00+0000"})
    assert cli.main(["collect", str(tmp_path / "machine2"), "--into", str(into)]) == 0
    batches = json.loads((into / "batch.json").read_text())
    assert len(batches) == 2 and batches[1]["finished"] == "2026-12-02T11:00:00+0000"
    assert len(pd.read_csv(into / "results.csv")) == 3


def test_collect_refuses_an_empty_batch_or_a_foreign_table(tmp_path, capsys):
    assert cli.main(["collect", str(tmp_path / "nothing"), "--into", str(tmp_path / "results")]) == 2
    assert "holds no metrics.json" in capsys.readouterr().err and not (tmp_path / "results").exists()
    _batch_folder(tmp_path / "batch", {("03_x", 0): 0.5}, {"command": "c", "date": "d"})
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "results.csv").write_text("name,score\nmy run,1\n")
    assert cli.main(["collect", str(tmp_path / "batch"), "--into", str(foreign)]) == 2
    assert "collect into an empty folder" in capsys.readouterr().err
    assert (foreign / "results.csv").read_text() == "name,score\nmy run,1\n"  # the user's file is untouched


def test_repository_url_lives_in_config_and_toc_resolves():
    url = repository_url()
    assert url.startswith("https://github.com/") and colab_cell() == COLAB_CELL.format(url=url)
    assert all(p.suffix in (".md", ".ipynb") for p in toc_files())


def test_mathjax_is_installed_from_the_pinned_tarball(tmp_path):
    folder = ensure_mathjax(tmp_path / "_static")
    assert (folder / "tex-chtml.js").stat().st_size > 500_000
    assert list((folder / "output" / "chtml" / "fonts" / "woff-v2").glob("MathJax_Main-Regular.woff"))
    assert ensure_mathjax(tmp_path / "_static") == folder  # present: nothing to do


def test_book_staging_hides_injected_parameters_and_picks_batch_runs(standin, tmp_path):
    from ssltutor.book import _executed_copy, hide_injected_parameters

    for name in ("aptos2019-cpu-seed0", "cifar10-cpu-seed0", "cifar10-cpu-seed1", "digits-cpu-seed0"):
        (tmp_path / "runs" / "02_standin" / name).mkdir(parents=True)
        (tmp_path / "runs" / "02_standin" / name / "metrics.json").write_text("{}")
    (tmp_path / "runs" / "02_standin" / "digits-cpu-seed0" / "metrics.json").unlink()  # unfinished: never shown
    pick = functools.partial(_executed_copy, tmp_path / "runs", "02_standin")
    assert pick(None, 0).parent.name == "cifar10-cpu-seed0"
    assert pick("aptos2019", 0).parent.name == "aptos2019-cpu-seed0"
    assert pick("digits", 0) is None and pick(None, 1).parent.name == "cifar10-cpu-seed1"

    prepared = tmp_path / "prepared.ipynb"
    papermill.execute_notebook(str(standin), str(prepared), parameters={"seed": 2}, prepare_only=True)
    hide_injected_parameters(prepared, tmp_path / "staged.ipynb")
    tags = [c.metadata.get("tags", []) for c in nbformat.read(tmp_path / "staged.ipynb", as_version=4).cells]
    assert ["injected-parameters", "hide-cell"] in tags and ["parameters"] in tags
