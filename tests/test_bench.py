"""The benchmark command lines run and print the documented lines (the numbers themselves are not asserted)."""
import pytest
import torch

from ssltutor import bench


def test_step_rows_have_the_documented_format(capsys):
    rows = bench.bench_step(["supervised", "simclr"], ["small_convnet"], ["fp32"], batch_size=16, width=8, repeats=1)
    out = capsys.readouterr().out.splitlines()
    assert [r["method"] for r in rows] == ["supervised", "simclr"]
    assert rows[0]["ratio"] == pytest.approx(1.0)
    assert rows[1]["images_per_s"] > 0 and rows[1]["ratio"] > 0
    assert out[1].startswith("step simclr small_convnet8 fp32: ") and out[1].endswith("x supervised")


def test_time_train_step_runs_the_hooks():
    from ssltutor.methods import create
    from ssltutor.models import create_backbone

    m = create("byol", create_backbone("small_convnet", width=8), head_scale=1 / 32)
    before = [p.clone() for p in m.target_backbone.parameters()]
    assert bench.time_train_step(m, batch_size=8, repeats=1, warmup=0, precision="bf16", channels_last=True) > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, m.target_backbone.parameters()))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_gpu_check_refuses_without_cuda():
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        bench.main(["gpu"])


def test_augment_bench_reports_rates_and_restores_the_thread_count():
    before = torch.get_num_threads()
    result = bench.bench_augment("cpu", batch_size=8, size=16, repeats=1, workers=0, rounds=1,
                                  threads=before % 2 + 1)  # differs from the caller's count
    assert torch.get_num_threads() == before
    assert {"cpu", "loader", "speedup_cpu", "cpu_time_per_sample", "cpu_time_batched"} <= set(result)
    assert all(result[k] > 0 for k in ("cpu", "loader", "cpu_time_per_sample", "cpu_time_batched"))
    assert result["speedup_cpu"] == pytest.approx(result["cpu"] / result["loader"])


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_seconds_per_step_is_the_mean_over_the_calls(clock):
    calls = []

    def step():
        calls.append(1)
        sum(range(20_000))  # some work, so that either clock moves

    seconds = bench.seconds_per_step(step, "cpu", repeats=3, clock=clock)
    assert len(calls) == 3 and seconds > 0
    with pytest.raises(ValueError, match="clock"):
        bench.seconds_per_step(step, clock="gpu")
    with pytest.raises(ValueError, match="repeats"):
        bench.seconds_per_step(step, repeats=0)
