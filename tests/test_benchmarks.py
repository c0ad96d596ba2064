"""The benchmarks as their README commands run them, shortened: they must keep
running, time the same work in every variant, and report figures that agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _benchmark(script: str, *args: str, cwd: Path) -> str:
    """Runs benchmarks/<script> with one repetition; returns what it printed."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--repeats", "1", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _agrees(quotient: float, q_digits: int, num: float, den: float, digits: int) -> bool:
    """Whether ``quotient``, printed with ``q_digits`` decimals, can be num / den of two
    values printed as ``num`` and ``den`` with ``digits`` decimals. A fixed tolerance
    would not do: the rounding of the printed values counts for more, relative to them,
    as a faster machine makes the times smaller."""
    half, q_half = 0.5 * 10**-digits, 0.5 * 10**-q_digits
    low, high = (num - half) / (den + half), (num + half) / (den - half)
    return low - q_half - 1e-9 <= quotient <= high + q_half + 1e-9


@pytest.mark.slow
def test_overhead_benchmark_times_the_same_training_and_reports_its_ratio(tmp_path: Path):
    out = _benchmark("overhead.py", "--workload", "default", "--epochs", "3", cwd=tmp_path)

    # Same seed, batches, loss and optimizer: the hand-written loop, lossopt and the
    # Fabric loop reach the same best validation accuracy.
    accuracies = re.search(r"best val acc a ([\d.]+)\s+b ([\d.]+)\s+d ([\d.]+)", out)
    assert accuracies, out
    a, b, d = (float(v) for v in accuracies.groups())
    assert a == b == d and a > 0.5

    row = re.search(r"^\| mlp on digits \|(.*)\|$", out, re.MULTILINE)
    assert row, out
    cells = [c.strip().strip("*") for c in row.group(1).split("|")]
    hand, fabric, trainer, lossopt, ratio = (float(c) for c in cells[:5])
    assert min(hand, fabric, trainer, lossopt) > 0
    assert _agrees(ratio, 2, lossopt, hand, 3)  # times to 3 decimals, their ratio to 2
    verdict = "met" if ratio <= 1.10 else "NOT met"
    assert f"- default: ratio {ratio:.2f}, target {verdict}" in out


@pytest.mark.slow
def test_startup_benchmark_times_both_variants_of_the_real_command(tmp_path: Path):
    out = _benchmark("startup.py", "--command", "single", cwd=tmp_path)
    walls = re.search(r"single: shipped ([\d.]+) s\s+collecting ([\d.]+) s", out)
    row = re.search(r"^\| single \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert walls and row, out
    shipped, collecting = (float(v) for v in walls.groups())
    assert (float(row[1]), float(row[2])) == (collecting, shipped)
    assert _agrees(float(row[3]), 3, shipped, collecting, 2)  # one repetition: paired = ratio
    assert not list(tmp_path.iterdir())  # its runs live in a temporary folder


@pytest.mark.slow
def test_sweep_throughput_image_workloads_run_the_same_jobs_in_all_three_runners(tmp_path):
    # The GPU workloads' runners, on the CPU: (a) builds the data and model the
    # workload names, and all three train the same jobs.
    out = _benchmark("sweep_throughput.py", "--workload", "cpu_lenet5_tiny", cwd=tmp_path)
    jobs = re.findall(
        r"^   job (\w+) (\w+) ([\d.e-]+) (\d+): a ([\d.]+)  b ([\d.]+)  c ([\d.]+)", out, re.M
    )
    assert len(jobs) == 4, out
    for job in jobs:
        a, b, c = (float(v) for v in job[4:])
        assert max(a, b, c) - min(a, b, c) <= 0.01, job
    assert max(float(job[4]) for job in jobs) > 0.5, out  # adam learns in 2 epochs
    assert "c grouped: 4 jobs: 1 stacked group of 4" in out
    assert "model=lenet5" in out and "data=synthetic_images" in out


@pytest.mark.slow
def test_sweep_throughput_benchmark_runs_the_same_jobs_in_all_three_runners(tmp_path: Path):
    out = _benchmark("sweep_throughput.py", "--workload", "tiny", cwd=tmp_path)

    # Same seed, data, order, loss contract, optimizer and lr: the hand-written script
    # (a), lossopt's basic launcher (b) and its default launcher (c) reach the same best
    # validation accuracy on every job (a different lr in (a) would not).
    jobs = re.findall(
        r"^   job (\w+) (\w+) ([\d.e-]+) (\d+): a ([\d.]+)  b ([\d.]+)  c ([\d.]+)", out, re.M
    )
    assert {job[:4] for job in jobs} == {
        (loss, optimizer, "0.01", "0")
        for loss in ("cross_entropy", "mse")
        for optimizer in ("sgd", "adamw")
    }, out
    for job in jobs:
        a, b, c = (float(v) for v in job[4:])
        assert max(a, b, c) - min(a, b, c) <= 0.01, job
    assert max(float(job[5]) for job in jobs) > 0.5  # adamw learns in 2 epochs
    assert "launchers b BasicLauncher" in out

    row = re.search(r"^\| tiny \| 4 x 2 \|(.*)\|$", out, re.M)
    assert row, out
    cells = [c.strip() for c in row.group(1).split("|")]
    wall_a, wall_b, wall_c, per_h_a, per_h_b, per_h_c = (float(c) for c in cells[:6])
    c_a, paired_c_a, c_b, paired_c_b = (float(c) for c in cells[6:10])
    assert min(wall_a, wall_b, wall_c) > 0
    for wall, per_hour in ((wall_a, per_h_a), (wall_b, per_h_b), (wall_c, per_h_c)):
        assert _agrees(per_hour, 0, 4 * 3600, wall, 2)
    assert c_a == pytest.approx(wall_c / wall_a, rel=0.005)
    assert c_b == pytest.approx(wall_c / wall_b, rel=0.005)
    assert (paired_c_a, paired_c_b) == pytest.approx((c_a, c_b), abs=0.002)  # one repetition
    for agreement in cells[10:13]:
        share, gap = re.fullmatch(r"(\d+)% \(([\d.]+)\)", agreement).groups()
        assert share == "100" and float(gap) <= 0.01, agreement
    assert "- tiny: no target" in out
    assert not list(tmp_path.iterdir())  # its runs live in a temporary folder
