"""Write results/cpu/README.md from the files beside it: the batch commands, dates and machine (batch.json), what
each notebook x dataset ran and how long it took (ssltutor.results.runs_matrix of results.csv) and the chapters'
claims tested on these runs (ssltutor.results.claims_table). Every number comes from the files.

    python results/cpu/report.py            # from the repository root; rewrites results/cpu/README.md
"""
import json
from pathlib import Path

from ssltutor.results import claims_table, load_results, markdown_table, runs_matrix

HERE = Path(__file__).resolve().parent
MATRIX_RUNS = 5 * 3 * 3  # five paper notebooks x three datasets x three seeds


def invocation(b: dict) -> str:
    """One line per `ssltutor batch` invocation of batch.json."""
    done = (f"finished {b['finished']} after {b['wall_s'] / 3600:.2f} h ({b['ran']} runs, {b['failed']} failed)"
            if "finished" in b else "not finished when this README was written (still running, or stopped when its "
                                    "session ended; the runs it finished are kept)")
    return (f"* {b['date']}, {b.get('workers', 1)} worker(s): `{b['command']}`: {b['jobs']} runs planned, "
            f"{b['already_done']} already done; {done}; {b['machine']}")


def readme(folder: Path = HERE) -> str:
    results = load_results(folder)
    batches = json.loads((folder / "batch.json").read_text()) if (folder / "batch.json").is_file() else []
    matrix = runs_matrix(results)
    hours = float(matrix["hours"].sum()) if len(matrix) else 0.0
    shown = matrix.assign(minutes_per_run=matrix["minutes_per_run"].map("{:.1f}".format),
                          hours=matrix["hours"].map("{:.2f}".format))
    claims = claims_table(results)
    invocations = [invocation(b) for b in batches]
    wall = sum(b.get("wall_s", 0.0) for b in batches) / 3600
    runs = int(results["run"].nunique()) if len(results) else 0
    return "\n".join([
        "# results/cpu: the full runs of the paper chapters at the `cpu` preset", "",
        "What the paper chapters' full-run sections and the results chapter render (`ssltutor.results.full_runs`,",
        "`claims_table`). Written by `python results/cpu/report.py` from the files here:", "",
        "* `batch.json`: every `ssltutor batch` invocation that filled the folder (command, date, machine);",
        "* `results.csv`: every run's `metrics.json`, one row per (notebook, dataset, seed, variant, metric), with its",
        "  duration, train and test image counts, versions and command;",
        "* `histories.csv`: the per-epoch (per-task for CaSSLe) histories the chapters plot.", "",
        "## How it was run", "",
        "The matrix is the five paper notebooks x {CIFAR-10 on the 20,000-image pool of `shared/data/cifar10_20k`",
        "(20,000 train / 10,000 test), the Intel Image and APTOS 2019 subsets} x seeds 0, 1, 2 at the `cpu` preset,",
        "CaSSLe with `-p compare_methods simclr,byol,barlow_twins`. The data folder is a folder of links: its",
        "`cifar-10-batches-py` is the 20k pool's, `intel_image` and `aptos2019` the subsets (Intel Image also serves",
        "DoGo's transfer from CIFAR-10). The batch is resumable: rerunning a command skips finished runs. The matrix",
        "was filled over several sessions, each on a new machine whose batch folder started empty; each session's",
        "runs were added here with `ssltutor collect /work/runs/cpu --into results/cpu` (a run collected again",
        "replaces its rows, the others are kept), so an invocation below that did not finish lost only the run it",
        "had in progress, which a later invocation ran again. Invocations:",
        "", *invocations, "",
        f"Runs finished: {runs} of the matrix's {MATRIX_RUNS}; their notebooks' wall times add up to {hours:.1f} "
        f"hours, and the invocations that finished took {wall:.1f} hours of wall clock, on one 2-core machine",
        "(with 2 workers, two single-threaded notebooks ran side by side, so a run's minutes are those of one core",
        "shared with another run).", "",
        *markdown_table(shown), "",
        "## The claims, tested on these runs", "",
        "Each chapter's claim as two of its variants on one metric, mean ± std over seeds; *holds* when the",
        "difference of means in the paper's direction exceeds the pooled seed standard deviation, *reversed* when it",
        "exceeds it the other way, *not resolved* in between (`ssltutor.results.claims_table`).", "",
        *(markdown_table(claims.drop(columns=["claim"])) if len(claims) else ["No claim has runs yet."]), "",
    ])


if __name__ == "__main__":
    text = readme()
    (HERE / "README.md").write_text(text)
    print(text)
