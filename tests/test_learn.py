"""ssltutor.learn and `python -m ssltutor.bench learn`: the laptop-scale recipe, trained on real CIFAR-10 images."""
import re

import pandas as pd
import pytest
import torch

from ssltutor import bench, data
from ssltutor.learn import (LEARN_METHODS, LearnResult, best_line, build_method, learn_run, load_records,
                            choice_runs, load_screening, method_settings, recipe_table, summary_table)
from ssltutor.presets import preset

LINE = re.compile(r"^learn (\w+) seed (\d+): probe (0\.\d{3}|1\.000), knn (0\.\d{3}|1\.000), random init probe "
                  r"(0\.\d{3}|1\.000), knn (0\.\d{3}|1\.000), epochs (\d+), train seconds (\d+)$")


@pytest.fixture(scope="module")
def cifar(shared_data):
    train = data.load("cifar10", root=shared_data, split="train", size=32)
    test = data.load("cifar10", root=shared_data, split="test", size=32)
    return train, test


def test_every_method_has_a_recipe_at_cpu_and_smoke():
    for name in ("cpu", "smoke"):
        settings = preset(name, paper="learn")
        assert set(settings["methods"]) == set(LEARN_METHODS)
        for method in LEARN_METHODS:
            s = method_settings(settings, method)
            assert s["epochs"] >= 1 and s["lr"] > 0 and isinstance(s["options"], dict)
    with pytest.raises(ValueError, match="unknown method 'sim'"):
        method_settings(preset("cpu", paper="learn"), "sim")


@pytest.mark.parametrize("name", LEARN_METHODS)
def test_build_method_uses_the_recipe(name):
    settings = preset("cpu", paper="learn")
    s = method_settings(settings, name)
    method = build_method(name, s, seed=0, dataset="cifar10", num_classes=10)
    assert method.backbone.name == f"{s['backbone']}{s['width']}"
    assert method.views[0].config.size == (s.get("view_size") or s["image_size"])  # training views
    assert method.eval_transform.config.size == s["image_size"]  # evaluation at full size
    again = build_method(name, s, seed=0, dataset="cifar10", num_classes=10)
    first = next(method.backbone.parameters())
    assert torch.equal(first, next(again.backbone.parameters()))  # the seed fixes the initial weights


def test_learn_run_trains_and_scores_the_frozen_backbone(cifar):
    train, test = cifar
    settings = preset("smoke", paper="learn")
    small_train, small_test = train.subset(torch.arange(512)), test.subset(torch.arange(256))
    result = learn_run("simclr", small_train, small_test, settings, seed=0, overrides={"epochs": 1})
    assert isinstance(result, LearnResult) and result.epochs == 1
    assert 0 <= result.probe <= 1 and 0 <= result.knn <= 1 and 0 <= result.probe0 <= 1
    assert result.train_seconds > 0 and len(result.history) == 1
    assert LINE.match(result.line())
    # The random-init floor is the untrained network of the same seed: the training moved the features.
    assert (result.probe, result.knn) != (result.probe0, result.knn0)


def test_supervised_reports_its_own_classifier(cifar):
    train, test = cifar
    settings = preset("smoke", paper="learn")
    result = learn_run("supervised", train.subset(torch.arange(512)), test.subset(torch.arange(256)), settings,
                       overrides={"epochs": 2})
    assert result.method == "supervised" and 0 < result.probe <= 1


def test_best_line_picks_the_highest_mean_probe():
    rows = [LearnResult("simclr", 0, 0.5, 0.4, 0.3, 0.3, 1, 1.0), LearnResult("simclr", 1, 0.7, 0.4, 0.3, 0.3, 1, 1.0),
            LearnResult("byol", 0, 0.55, 0.4, 0.35, 0.3, 1, 1.0), LearnResult("supervised", 0, 0.9, 0.8, 0.3, 0.3, 1, 1.0)]
    assert best_line(rows) == "learn best: simclr probe 0.600 (+30.0 points over random init)"
    with pytest.raises(ValueError, match="self-supervised"):
        best_line(rows[-1:])


def test_bench_learn_prints_the_documented_lines(shared_data, capsys):
    # The CI smoke of the benchmark: the real cpu recipe, one method, one epoch, on the CIFAR-10 subset.
    bench.main(["learn", "--methods", "simclr", "--data-root", str(shared_data), "--preset", "cpu",
                "--epochs", "1", "--max-train", "512", "--threads", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("learn data: 512 train / 1000 test images of cifar10, preset cpu")
    assert LINE.match(lines[1]) and lines[1].startswith("learn simclr seed 0: ")
    assert re.match(r"^learn best: simclr probe \d\.\d{3} \([+-]\d+\.\d points over random init\)$", lines[2])


@pytest.mark.parametrize("argv, message", [(["--methods", "simclr,nope"], "unknown method"),
                                           (["--seeds", "0,x"], "comma-separated integers")])
def test_bench_learn_rejects_bad_arguments(argv, message):
    with pytest.raises(SystemExit, match=message):
        bench.main(["learn", *argv])


def test_bench_learn_records_rows_and_resumes_without_training_again(shared_data, tmp_path, capsys, monkeypatch):
    record = tmp_path / "runs.csv"
    argv = ["learn", "--methods", "simclr", "--data-root", str(shared_data), "--preset", "smoke", "--epochs", "2",
            "--max-train", "256", "--threads", "1", "--monitor", "--record", str(record), "--label", "views/x",
            "--set", "options.temperature=0.5"]
    bench.main(argv)
    first = capsys.readouterr().out.splitlines()[1]
    rows = load_records(record)
    assert list(rows["epoch"]) == [1, 2] and set(rows["label"]) == {"views/x"}
    assert rows["seconds"].is_monotonic_increasing and rows["knn_monitor"].between(0, 1).all()
    assert rows["overrides"].iloc[0] == '{"epochs": 2, "options.temperature": 0.5}'
    bench.main(argv)  # the same run again: read back, not retrained
    assert capsys.readouterr().out.splitlines()[1] == first
    assert len(load_records(record)) == 2
    # a labelled run is a sweep's, not the recipe's: the summary only counts runs recorded under the method's name
    assert summary_table(load_records(record)).empty
    table = summary_table(load_records(record).assign(label="simclr"))
    assert list(table.index) == ["simclr"] and table.loc["simclr", "seeds"] == 1
    # a changed recipe is a new run: trained again, not read back
    from ssltutor.presets import PAPER_PRESETS

    monkeypatch.setitem(PAPER_PRESETS["learn"]["smoke"]["methods"]["simclr"], "lr", 2e-3)
    bench.main(argv)
    rows = load_records(record)
    assert len(rows) == 4 and rows["recipe"].nunique() == 2 and '"lr": 0.002' in rows["recipe"].iloc[-1]


def test_recipe_table_lists_every_method():
    table = recipe_table("cpu")
    assert list(table.index) == list(LEARN_METHODS)
    assert table.loc["simclr", "backbone"].startswith(preset("cpu", paper="learn")["backbone"])


def test_bad_overrides_and_records_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown setting 'lrr'"):
        method_settings(preset("cpu", paper="learn"), "simclr", {"lrr": 1})
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        bench.main(["learn", "--set", "lr"])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks the column"):
        load_records(bad)
    assert load_records(tmp_path / "missing.csv").empty


def test_choice_runs_selects_a_choice_and_adds_the_baseline():
    records = pd.DataFrame({"label": ["backbone/a", "backbone/b", "views/c"], "epoch": [1, 1, 1]})
    assert list(choice_runs(records, "backbone").label) == ["a", "b"]
    assert list(choice_runs(records, "views", baseline=("backbone/a", "base")).label) == ["base", "c"]
    with pytest.raises(ValueError, match="no run labelled"):
        choice_runs(records, "views", baseline=("nope", "x"))


def test_load_screening_reads_the_committed_runs(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"cfg": {"method": "simclr", "width": 16, "epochs": 2, "lr": 0.001, "view_size": 24}, '
                    '"curve": [[10.0, 0.3], [30.0, 0.4]], "train_s": 30.0, "probe": 0.5, "knn": 0.45}\n'
                    '{"cfg": {"method": "supervised", "epochs": 1, "optimizer": "sgd", "lr": 0.1}, '
                    '"train_s": 9.0, "test_acc": 0.7, "probe": 0.6, "knn": 0.5, "probe0": 0.4}\n')
    frame = load_screening(path)
    assert list(frame.index) == [1, 2] and frame.loc[1, "views px"] == 24 and frame.loc[2, "views px"] == 32
    assert frame.loc[1, "median_epoch_s"] == pytest.approx(15.0) and pd.isna(frame.loc[2, "median_epoch_s"])
    assert frame.loc[2, "probe"] == 0.7  # a supervised run reports its own classifier


def test_the_committed_screening_file_loads():
    from pathlib import Path

    frame = load_screening(Path(__file__).resolve().parents[1] / "results" / "laptop" / "screening.jsonl")
    assert len(frame) >= 5 and frame["probe"].between(0, 1).all()


def _screening_file(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"cfg": {"method": "simclr", "epochs": 2, "choice": {"views": "32 px", "optimizer": "Adam"}}, "probe0": 0.4, '
        '"curve": [[10.0, 0.3], [30.0, 0.4]], "train_s": 30.0, "probe": 0.5, "knn": 0.45}\n'
        '{"cfg": {"method": "simclr", "epochs": 2, "view_size": 24, "choice": {"views": "24 px"}}, '
        '"curve": [[6.0, 0.31], [12.0, 0.41]], "train_s": 12.0, "probe": 0.52, "knn": 0.46}\n'
        '{"cfg": {"method": "simclr", "epochs": 3, "backbone": "fast_convnet", "choice": {"views": "fast"}}, '
        '"train_s": 5.0, "probe": 0.45}\n'
        '{"cfg": {"method": "supervised", "epochs": 1}, "train_s": 9.0, "test_acc": 0.7}\n')
    return path


def test_screening_curves_give_one_label_per_value_of_a_choice(tmp_path):
    from ssltutor.learn import screening_choices, screening_curves

    path = _screening_file(tmp_path)
    assert screening_choices(path) == ["views", "optimizer"]
    curves = screening_curves(path, "views")
    assert list(curves.label.unique()) == ["32 px", "24 px", "fast"]
    fast = curves[curves.label == "fast"]  # another network (no floor measured for it), no curve: its end point
    assert fast.probe0.isna().all() and list(fast.epoch) == [3] and list(fast.seconds) == [5.0]
    assert fast.knn_monitor.isna().all()
    curves = curves[curves.label != "fast"]
    assert list(curves[curves.label == "24 px"].seconds) == [6.0, 12.0]
    assert list(curves[curves.label == "24 px"].epoch) == [1, 2]
    # the 24 px run has no random-init probe of its own: it gets the other run's (same untrained network)
    assert (curves.probe0 == 0.4).all() and list(curves.groupby("label", sort=False).probe.first()) == [0.5, 0.52]
    assert load_screening(path).loc[1, "choices"] == "optimizer, views"


def test_screening_curves_name_the_known_choices_when_one_is_missing(tmp_path):
    from ssltutor.learn import screening_curves

    with pytest.raises(ValueError, match="choices in .* are views, optimizer"):
        screening_curves(_screening_file(tmp_path), "backbone")


def test_screening_curves_plot_against_seconds(tmp_path):
    from ssltutor.learn import screening_curves
    from ssltutor.plots import plot_accuracy_vs_time

    fig = plot_accuracy_vs_time(screening_curves(_screening_file(tmp_path), "views"), title="views")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["32 px", "24 px", "fast"]
    floors = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == ":"]
    assert len(floors) == 2  # the fast_convnet run has no measured floor: no dotted line for it


def test_curve_summary_gives_the_last_epoch_of_each_label(tmp_path):
    from ssltutor.learn import curve_summary, screening_curves

    table = curve_summary(screening_curves(_screening_file(tmp_path), "views"))
    assert list(table.index) == ["32 px", "24 px", "fast"]
    assert table.loc["24 px", "seconds"] == 12.0 and table.loc["24 px", "epochs"] == 2
    assert table.loc["24 px", "probe"] == 0.52 and table.loc["24 px", "probe gain (points)"] == 12.0


def test_recorded_lines_print_the_recipe_runs_by_seed_then_method():
    from ssltutor.learn import RECORD_COLUMNS, recorded_lines

    def row(label, method, seed, epoch, probe):
        return dict(label=label, method=method, seed=seed, preset="cpu", overrides="{}", train_images=20000,
                    epoch=epoch, seconds=10.0 * epoch, knn_monitor=float("nan"), epochs=2, train_seconds=20.0,
                    probe=probe, knn=0.5, probe0=0.4, knn0=0.3, recipe="{}")

    records = pd.DataFrame([row("simclr", "simclr", 1, 1, 0.6), row("simclr", "simclr", 1, 2, 0.6),
                            row("supervised", "supervised", 0, 2, 0.8), row("simclr", "simclr", 0, 2, 0.55),
                            row("views/x", "simclr", 0, 2, 0.9)], columns=list(RECORD_COLUMNS))
    lines = recorded_lines(records)
    assert [line.split(":")[0] for line in lines[:3]] == [
        "learn supervised seed 0", "learn simclr seed 0", "learn simclr seed 1"]
    assert lines[1] == ("learn simclr seed 0: probe 0.550, knn 0.500, random init probe 0.400, knn 0.300, "
                        "epochs 2, train seconds 20")
    assert lines[-1] == "learn best: simclr probe 0.575 (+17.5 points over random init)"  # the labelled run is out


def _final(method, seed, probe, knn, probe0=0.45, knn0=0.38, seconds=400.0):
    return {"label": method, "method": method, "seed": seed, "preset": "cpu", "overrides": "{}",
            "train_images": 20000, "epoch": 5, "seconds": seconds, "knn_monitor": float("nan"), "epochs": 5,
            "train_seconds": seconds, "probe": probe, "knn": knn, "probe0": probe0, "knn0": knn0, "recipe": "r"}


def test_target_checks_are_computed_from_the_records():
    from ssltutor.learn import target_checks

    rows = [_final("supervised", s, 0.86, 0.86, 0.49, 0.40) for s in range(3)]
    rows += [_final("vicreg", s, 0.64 + s / 100, 0.61) for s in range(3)]
    rows += [_final("byol", s, 0.55, 0.50) for s in range(3)]
    checks = target_checks(pd.DataFrame(rows))
    assert checks["met"].all(), checks
    assert checks.loc["best", "measured"] == "vicreg 0.650 (+20.0 points, mean of 3 seeds)"
    assert checks.loc["every", "measured"].startswith("smallest gain byol +10.0")
    worse = [*rows[:-1], _final("byol", 2, 0.30, 0.10, seconds=700.0)]  # a slow seed below its random init
    checks = target_checks(pd.DataFrame(worse))
    assert not checks.loc["every", "met"] and checks.loc["every", "measured"] == "byol +1.7; byol kNN 0.367 < 0.380"
    assert not checks.loc["time", "met"] and checks.loc["time", "measured"] == "byol seed 2: 700 s"
    assert checks.loc["seeds", "met"] and checks.loc["supervised", "met"]
    few = target_checks(pd.DataFrame(rows[:4]))
    assert not few.loc["seeds", "met"] and few.loc["seeds", "measured"] == "vicreg: 1"
    with pytest.raises(ValueError, match="no recorded runs"):
        target_checks(pd.DataFrame(columns=rows[0].keys()))


def test_readme_section_is_the_report_of_the_committed_records():
    """The README's bench-learn block is what results/laptop/report.py makes of results/laptop/bench.csv."""
    import importlib.util

    from ssltutor.runs import ROOT

    spec = importlib.util.spec_from_file_location("report", ROOT / "results" / "laptop" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    expected = report.section(load_records(ROOT / "results" / "laptop" / "bench.csv"))
    assert expected in (ROOT / "README.md").read_text(), "rerun: python results/laptop/report.py"


def test_learn_line_prints_train_seconds_as_recorded():
    # 1.46 s is recorded as 1.5 s: the line of the fresh run and of the run read back must agree ("2" both)
    fresh, recorded = (LearnResult("simclr", 0, 0.5, 0.4, 0.3, 0.3, 1, s).line() for s in (1.46, 1.5))
    assert fresh == recorded and fresh.endswith("train seconds 2")
