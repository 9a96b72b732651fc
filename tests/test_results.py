"""The results chapter's tables and figures, on a small hand-made results table (values chosen to check the maths)."""
from __future__ import annotations

import matplotlib
import pandas as pd
from matplotlib.container import BarContainer
import pytest

from ssltutor.results import (
    comparison,
    is_percent,
    load_paper_numbers,
    load_results,
    paper_sources,
    plot_notebook,
    summarize,
)
from ssltutor.runs import RESULT_COLUMNS, ROOT

matplotlib.use("Agg")
NB = "02_functional_knowledge_transfer"


@pytest.fixture
def results():
    rows = []
    for seed, (rt, fkt) in enumerate([(0.50, 0.60), (0.52, 0.64), (0.54, 0.68)]):
        for variant, value in (("rt", rt), ("fkt", fkt), ("rt@0.1", 0.3)):
            rows.append({"notebook": NB, "dataset": "cifar10", "preset": "cpu", "seed": seed, "options": "",
                         "variant": variant, "metric": "accuracy", "value": value, "duration_s": 60.0 * (seed + 1)})
    return pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)


def test_summary_is_mean_and_sample_std_over_seeds(results):
    summary = summarize(results)
    fkt = summary[summary.variant == "fkt"].iloc[0]
    assert fkt["mean"] == pytest.approx(0.64) and fkt["std"] == pytest.approx(0.04) and fkt["seeds"] == 3
    assert fkt["duration_s"] == pytest.approx(120.0)
    single = summarize(results[results.seed == 0])
    assert (single["std"] == 0).all(), "one seed: std 0, not NaN"


def test_comparison_puts_the_paper_number_beside_ours(results):
    paper = load_paper_numbers(ROOT / "results" / "paper_numbers.csv")
    table = comparison(summarize(results), paper, NB, metrics=["accuracy"], variants=["rt", "fkt"])
    assert table.loc[("cifar10", "fkt"), "accuracy"] == "64.0 ± 4.0"
    assert table.loc[("cifar10", "fkt"), "accuracy (paper)"] == "93.6 ± 0.1"
    assert table.loc[("cifar10", "rt"), "seeds"] == 3
    assert ("intel_image", "fkt") in table.index, "datasets only the paper reports keep their rows"
    assert "rt@0.1" not in table.index.get_level_values("variant")
    empty = comparison(summarize(results), paper, "04_nothing_yet")
    assert list(empty.columns) == ["note"]


def test_paper_numbers_file_is_complete():
    paper = load_paper_numbers(ROOT / "results" / "paper_numbers.csv")
    assert not paper.empty and paper["value"].between(0, 1).all(), "paper numbers are fractions, like ours"
    assert paper[["notebook", "dataset", "variant", "metric"]].duplicated().sum() == 0
    assert set(paper_sources(paper)["paper"]) == set(paper["paper"])


def test_figures_with_and_without_runs(results, tmp_path):
    paper = load_paper_numbers(ROOT / "results" / "paper_numbers.csv")
    summary = summarize(results)
    fig = plot_notebook(summary, paper, NB, ["accuracy"], ["rt", "fkt"])
    assert fig.axes[0].get_legend() is not None and "%" in fig.axes[0].get_ylabel()
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[:2] == ["rt", "fkt"] and legend[2:] in ([], ["paper (its setting)"])
    # several metrics: one panel each on its own scale, every variant in the same colour in every panel
    overhead = results.assign(metric="overhead", value=results["value"] * 3)
    two = plot_notebook(summarize(pd.concat([results, overhead])), paper, NB, ["accuracy", "overhead"],
                        ["rt", "fkt"])
    assert len(two.axes) == 2 and [ax.get_ylabel() for ax in two.axes] == ["accuracy (%)", "overhead"]
    bars = [{c.get_label(): c.patches[0].get_facecolor() for c in ax.containers if isinstance(c, BarContainer)}
            for ax in two.axes]
    assert list(bars[0]) == ["rt", "fkt"] and bars[0] == bars[1]
    assert plot_notebook(summary.iloc[0:0], paper, NB) is not None, "no runs: the paper's numbers alone"
    assert plot_notebook(summary, paper, "04_nothing_yet") is None
    assert is_percent("linear_noise_40") and is_percent("forgetting") and is_percent("forward_transfer")
    assert not is_percent("kappa_quadratic") and not is_percent("overhead") and not is_percent("train_s")


def test_load_results_without_a_file_is_empty(tmp_path):
    assert load_results(tmp_path).empty and list(load_results(tmp_path).columns) == RESULT_COLUMNS


def test_committed_cpu_results_are_cells_of_the_full_run_matrix():
    """results/cpu/ (which the chapters' full-run sections render) holds cells of the notebook x dataset x seed
    matrix at the cpu preset, filled by resumable batch invocations (their command, date and machine in
    batch.json); CIFAR-10 runs use the 20,000-image pool (FKT: 17,000 after its validation split). How many of the
    45 cells are done is in its README."""
    import json

    from ssltutor.runs import paper_notebooks

    folder = ROOT / "results" / "cpu"
    results = load_results(folder)
    assert not results.empty, "results/cpu/results.csv is missing: run the batch command in its README"
    runs = results.drop_duplicates("run")
    assert set(runs["notebook"]) <= {p.stem for p in paper_notebooks()}
    assert set(runs["preset"]) == {"cpu"} and set(runs["dataset"]) <= {"intel_image", "cifar10", "aptos2019"}
    assert set(runs["seed"].astype(int)) <= {0, 1, 2}
    cifar = runs[runs["dataset"] == "cifar10"]
    assert (cifar["train_images"] >= 17_000).all() and (cifar["test_images"] == 10_000).all()
    # a value is missing only where it is undefined: the joint upper bound trains no task sequence, so it has no
    # forgetting or transfer
    missing = results[results["value"].isna()]
    assert missing["variant"].str.endswith("/joint").all(), missing[["run", "variant", "metric"]].head()
    assert set(missing["metric"]) <= {"forgetting", "backward_transfer", "forward_transfer"}
    assert (runs["duration_s"] > 0).all()
    histories = pd.read_csv(folder / "histories.csv")
    assert set(histories["run"]) == set(runs["run"])  # every run's per-epoch curves are committed too
    batch = json.loads((folder / "batch.json").read_text())
    assert batch and all({"command", "date", "machine"} <= set(entry) for entry in batch)
    assert all("ssltutor batch" in b["command"] and "--preset cpu" in b["command"] for b in batch)


def test_paper_numbers_come_from_the_one_csv_in_percent():
    from ssltutor.results import PAPER_NUMBERS, paper_numbers

    assert PAPER_NUMBERS.resolve() == (ROOT / "results" / "paper_numbers.csv").resolve()  # the package's link
    fkt = paper_numbers("02_functional_knowledge_transfer")
    row = fkt[(fkt.dataset == "cifar10") & (fkt.variant == "fkt") & (fkt.metric == "accuracy")]
    assert row["value"].item() == pytest.approx(93.6)
    raw = paper_numbers("02_functional_knowledge_transfer", percent=False)
    assert raw["value"].max() < 1
    solo = paper_numbers("01_ssl_foundations").set_index("variant")["value"]
    assert set(solo.index) == {"simclr", "mocov2plus", "byol", "barlow_twins", "vicreg", "swav"}
    assert ((85 < solo) & (solo < 95)).all()
    with pytest.raises(ValueError, match="no paper numbers for notebook '07_x'.*02_functional_knowledge_transfer"):
        paper_numbers("07_x")


def test_no_paper_number_is_typed_into_a_notebook():
    """The chapters read the papers' tables from results/paper_numbers.csv: no literal of a reported value
    (as printed in %, e.g. 93.6 or 62.2) stands in a notebook's code."""
    import json
    import re

    paper = load_paper_numbers()
    typed = {f"{100 * v:.1f}".rstrip("0").rstrip(".") for v in paper["value"]} | {f"{100 * v:.2f}" for v in paper["value"]}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            literals = set(re.findall(r"(?<![\w.])\d{2}\.\d{1,2}(?![\w.])", source))
            assert not literals & typed, f"{path.name} cell {index} types paper numbers {sorted(literals & typed)}"


def _two_variants(better, worse, dataset="cifar10", metric="accuracy", notebook="02_functional_knowledge_transfer"):
    rows = [{"notebook": notebook, "dataset": dataset, "seed": seed, "variant": variant, "metric": metric,
             "value": value} for variant, values in (("fkt", better), ("rt", worse))
            for seed, value in enumerate(values)]
    return pd.DataFrame(rows)


def test_seed_comparison_pools_the_seed_spread():
    from ssltutor.results import seed_comparison

    c = seed_comparison(_two_variants([0.60, 0.62, 0.64], [0.50, 0.50, 0.53]), "02_functional_knowledge_transfer",
                        "cifar10", "fkt", "rt", "accuracy")
    assert c["better_mean"] == pytest.approx(0.62) and c["worse_mean"] == pytest.approx(0.51)
    assert c["difference"] == pytest.approx(0.11) and c["seeds"] == 3
    assert c["pooled_std"] == pytest.approx(((0.02 ** 2 + 0.017320508 ** 2) / 2) ** 0.5)
    with pytest.raises(ValueError, match=r"no 'accuracy' of variant\(s\) fkt for 03_x on cifar10.*: rt"):
        seed_comparison(_two_variants([], [0.5], notebook="03_x"), "03_x", "cifar10", "fkt", "rt", "accuracy")


@pytest.mark.parametrize("better, worse, status", [
    ([0.60, 0.62, 0.64], [0.50, 0.50, 0.53], "holds"),
    ([0.50, 0.50, 0.53], [0.60, 0.62, 0.64], "is reversed"),
    ([0.50, 0.60, 0.55], [0.52, 0.58, 0.54], "is not resolved"),
    ([0.60], [0.50], "cannot be judged"),
])
def test_verdict_says_whether_the_papers_direction_holds(better, worse, status):
    from ssltutor.results import CLAIMS, verdict

    sentence = verdict(_two_variants(better, worse), CLAIMS["02_functional_knowledge_transfer"], "cifar10")
    assert f"the paper's direction, joint SSL + supervised training (FKT) beats" in sentence
    assert f"(RT), {status}" in sentence
    assert "The paper: 93.6 vs 92.2 (cifar10; ResNet-50" in sentence  # from results/paper_numbers.csv
    if status != "cannot be judged":
        assert f"difference {100 * (sum(better) / 3 - sum(worse) / 3):+.1f} points" in sentence


def test_verdict_lower_is_better_and_no_paper_number():
    from ssltutor.results import Claim, verdict

    claim = Claim("02_functional_knowledge_transfer", "fkt", "rt", "forgetting", "FKT forgets less", higher=False)
    sentence = verdict(_two_variants([0.02, 0.03, 0.025], [0.10, 0.12, 0.11], metric="forgetting"), claim,
                       "cifar10")
    assert ", holds:" in sentence and "no number for this comparison" in sentence


def test_sweep_parses_levels_and_plots_one_panel_per_dataset():
    from ssltutor.results import plot_sweep, sweep

    rows = [{"notebook": "02_x", "dataset": d, "seed": seed, "variant": f"{base}@{level}", "metric": "accuracy",
             "value": 0.1 * level + (0.05 if base == "fkt" else 0) + seed / 100}
            for d in ("cifar10", "intel_image", "aptos2019") for seed in (0, 1) for base in ("fkt", "rt")
            for level in (1, 0.05, 0.2)]
    rows.append({"notebook": "02_x", "dataset": "cifar10", "seed": 0, "variant": "fkt", "metric": "accuracy",
                 "value": 0.9})  # not a sweep row
    table = sweep(pd.DataFrame(rows), "02_x", "accuracy")
    assert len(table) == 3 * 2 * 3 and (table["seeds"] == 2).all()
    first = table[(table.dataset == "aptos2019") & (table.base == "fkt")]
    assert first["level"].tolist() == [0.05, 0.2, 1.0]
    assert first["mean"].tolist() == pytest.approx([0.055 + 0.005, 0.07 + 0.005, 0.15 + 0.005])
    fig = plot_sweep(table, "labelled fraction", "accuracy", logx=True)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3 and fig.get_size_inches()[0] <= 8.5  # two panels a row: legible at page width
    assert visible[0].get_ylabel() == "accuracy (%)" and visible[0].get_xscale() == "log"
    rot = pd.DataFrame([{"notebook": "04_x", "dataset": "cifar10", "seed": 0, "variant": "simclr@4ep",
                         "metric": "knn", "value": 0.3}])
    assert sweep(rot, "04_x", "knn")["level"].tolist() == [4.0]
    with pytest.raises(ValueError, match="no sweep"):
        sweep(pd.DataFrame(rows), "02_x", "kappa")


def test_history_curves_accumulate_seconds_per_run():
    from ssltutor.results import history_curves

    rows = [{"notebook": "04_x", "dataset": "cifar10", "seed": seed, "variant": v, "epoch": e, "metric": m,
             "value": (2.0 + seed) if m == "time_s" else 0.1 * e}
            for v in ("simclr_rot", "simclr") for seed in (0, 1) for e in (1, 2, 3) for m in ("time_s", "knn_acc")]
    curves = history_curves(pd.DataFrame(rows), "04_x", "cifar10", "knn_acc", variants=["simclr", "simclr_rot"])
    assert list(curves.columns) == ["label", "seed", "epoch", "seconds", "knn_acc"]
    assert curves["label"].unique().tolist() == ["simclr", "simclr_rot"]
    one = curves[(curves.label == "simclr") & (curves.seed == 1)]
    assert one["seconds"].tolist() == [3.0, 6.0, 9.0] and one["knn_acc"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="no per-epoch probe"):
        history_curves(pd.DataFrame(rows), "04_x", "cifar10", "probe")


def test_accuracy_matrix_round_trips_through_metrics_and_histories(tmp_path):
    import numpy as np

    from ssltutor.results import accuracy_matrix, load_histories
    from ssltutor.runs import write_results
    from ssltutor.studies.base import write_metrics
    from ssltutor.studies.cassle import ContinualResult

    for seed in (0, 1):
        R = np.array([[0.8, 0.1], [0.6, 0.7]]) + seed / 10
        result = ContinualResult(R=R, overall=[0.45, 0.65], random_baseline=None, tasks=[])
        folder = tmp_path / "05_x" / f"cifar10-cpu-seed{seed}"
        write_metrics(folder, "05_x", {"dataset": "cifar10", "preset": "cpu", "seed": seed, "device": "cpu"},
                      {"simclr/cassle": result.summary()}, histories={"simclr/cassle": result.history()})
    write_results(tmp_path)
    mean, std, seeds = accuracy_matrix(load_histories(tmp_path), "05_x", "cifar10", "simclr/cassle")
    assert seeds == 2 and mean == pytest.approx(np.array([[0.85, 0.15], [0.65, 0.75]]))
    assert std == pytest.approx(np.full((2, 2), np.std([0.0, 0.1], ddof=1)))
    with pytest.raises(ValueError, match="no accuracy matrix of 'simclr/fine_tune'"):
        accuracy_matrix(load_histories(tmp_path), "05_x", "cifar10", "simclr/fine_tune")


def test_claims_table_says_what_the_paper_says_and_what_we_measured():
    from ssltutor.results import CLAIMS, claims_table

    frame = pd.concat([_two_variants([0.60, 0.62, 0.64], [0.50, 0.50, 0.53]),
                       _two_variants([0.50, 0.50, 0.53], [0.60, 0.62, 0.64], dataset="intel_image")])
    table = claims_table(frame, {"fkt": CLAIMS["02_functional_knowledge_transfer"]})
    assert table["dataset"].tolist() == ["cifar10", "intel_image"]
    assert table["verdict"].tolist() == ["holds", "reversed"]
    first = table.iloc[0]
    assert first["paper says"].startswith("93.6 vs 92.2 (cifar10;")
    assert first["we measured"] == "fkt 62.0 ± 2.0 vs rt 51.0 ± 1.7" and first["difference"] == "+11.0 ± 1.9"
    assert claims_table(frame.iloc[:0], {"fkt": CLAIMS["02_functional_knowledge_transfer"]}).empty


def test_full_runs_renders_a_chapter_from_the_committed_results():
    from ssltutor.results import full_runs

    section = full_runs(ROOT / "results" / "cpu", "02_functional_knowledge_transfer", ["accuracy"],
                        ["supervised", "rt", "fkt"])
    ran = set(load_results(ROOT / "results" / "cpu").query("notebook == '02_functional_knowledge_transfer'")["dataset"])
    assert ran and set(section.verdicts) == ran  # one verdict per dataset with runs (the matrix fills over sessions)
    assert all("the paper's direction" in v and "The paper:" in v for v in section.verdicts.values())
    assert section.markdown().count("* ") == len(ran) and section.figure is not None and section.runs > 0
    assert "accuracy (paper)" in section.table.columns
    empty = full_runs(ROOT / "results" / "cpu", "07_none")
    assert empty.verdicts == {} and empty.figure is None and "No full runs" in empty.markdown()


def test_comparisons_expand_a_sweep_and_judge_each_level():
    from ssltutor.results import comparisons, comparisons_sentence

    rows = []
    for variant, values in {"fkt@0.01": [0.30, 0.32, 0.34], "rt@0.01": [0.20, 0.21, 0.22],
                            "fkt@1": [0.60, 0.61, 0.62], "rt@1": [0.70, 0.71, 0.72],
                            "fkt@0.2": [0.50, 0.55, 0.45], "rt@0.2": [0.50, 0.51, 0.49],
                            "supervised@1": [0.65, 0.66, 0.67]}.items():
        rows += [{"notebook": "02_functional_knowledge_transfer", "dataset": "cifar10", "seed": seed,
                  "variant": variant, "metric": "accuracy", "value": v} for seed, v in enumerate(values)]
    frame = pd.DataFrame(rows)
    table = comparisons(frame, "02_functional_knowledge_transfer", [("fkt@*", "rt@*"), ("fkt@1", "supervised@1"),
                                                                    ("fkt", "rt")], "accuracy")
    assert table["level"].tolist() == ["0.01", "0.2", "1", ""]  # sorted by level; the missing pair is left out
    assert table["status"].tolist() == ["holds", "not resolved", "reversed", "reversed"]
    assert table.loc[0, "difference"] == pytest.approx(11.0) and table.loc[0, "better mean"] == pytest.approx(32.0)
    sentence = comparisons_sentence(table, "FKT beating RT")
    assert sentence.startswith("Of 4 comparisons, FKT beating RT holds in 1 (cifar10 fkt@0.01 vs rt@0.01 +11.0 ± ")
    assert "is reversed in 2" in sentence and "within the seed spread in 1" in sentence
    assert comparisons_sentence(table.iloc[:0], "FKT beating RT") == "No runs compare FKT beating RT yet."
    several = comparisons_sentence(table.assign(metric="accuracy"), "FKT beating RT")
    assert "cifar10 fkt@0.01 vs rt@0.01 (accuracy) +11.0 ± " in several
    lower = comparisons(frame, "02_functional_knowledge_transfer", [("rt@1", "fkt@1")], "accuracy", higher=False)
    assert lower["status"].tolist() == ["reversed"]  # rt is higher, but lower was claimed better


def test_runs_matrix_counts_seeds_images_and_time():
    from ssltutor.results import runs_matrix

    rows = [{"notebook": "02_x", "dataset": "cifar10", "seed": seed, "run": f"02_x/cifar10-cpu-seed{seed}",
             "variant": v, "metric": "accuracy", "value": 0.5, "duration_s": 600.0 * (seed + 1),
             "train_images": 17000, "test_images": 10000} for seed in (0, 1) for v in ("fkt", "rt")]
    rows += [{"notebook": "02_x", "dataset": "aptos2019", "seed": 0, "run": "02_x/aptos2019-cpu-seed0",
              "variant": "fkt", "metric": "accuracy", "value": 0.4, "duration_s": 60.0,
              "train_images": None, "test_images": None}]
    table = runs_matrix(pd.DataFrame(rows)).set_index("dataset")
    assert table.loc["cifar10", "seeds"] == "0,1" and table.loc["cifar10", "train_images"] == "17000"
    assert table.loc["cifar10", "minutes_per_run"] == pytest.approx(15.0)  # runs counted once, not per row
    assert table.loc["cifar10", "hours"] == pytest.approx(0.5)
    assert table.loc["aptos2019", "train_images"] == "not recorded"
    assert runs_matrix(pd.DataFrame()).empty


def test_results_cpu_readme_is_what_its_report_writes():
    """results/cpu/README.md is what results/cpu/report.py makes of the files beside it (rerun it after a batch)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cpu_report", ROOT / "results" / "cpu" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert report.readme() == (ROOT / "results" / "cpu" / "README.md").read_text(), "rerun: python results/cpu/report.py"


def test_markdown_table_lines_with_and_without_the_index():
    from ssltutor.results import markdown_table

    frame = pd.DataFrame({"a": [1, 2], "b": ["x", 0.5]}, index=pd.Index(["r1", "r2"], name="run"))
    assert markdown_table(frame) == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 | 0.5 |"]
    assert markdown_table(frame, index=True) == ["| run | a | b |", "|---|---|---|", "| r1 | 1 | x |",
                                                 "| r2 | 2 | 0.5 |"]
    assert markdown_table(frame.iloc[:0]) == ["| a | b |", "|---|---|"]
