"""Fixed cost per job of a sweep: basic launcher, MLflow tracking on (SQLite store).

Usage::

    python benchmarks/sweep_overhead.py [--jobs 8] [--epochs 1 8] [--repeats 3]


What is measured. With Hydra's basic launcher the jobs of a sweep run one after another
in one process, so imports and the dataset are paid once per sweep. What remains per
job is lossopt's own fixed cost: composing the job's config, the MLflow child run
(creation, params, config artifact, dataset input, terminal status), building the
plugins and the Trainer, Lightning's sanity check, the test pass on the best
checkpoint, the confusion-matrix figure, printing, and waiting for MLflow's
asynchronous logging. A sweep of N jobs of E epochs each takes::

    T(N, E) = P + N * (J + E * e)

P: process fixed cost (interpreter, imports, Hydra start-up, creating the SQLite schema
of the fresh store, the sweep's parent run, the first job's first-use costs, the
summary); J: per-job fixed cost; e: training time per epoch (training steps, validation
pass, checkpoint save, metric logging). "Training time of one job" is E * e.

How (``--mode measure``, the default). The real CLI runs as a subprocess, in a fresh
temporary folder with a fresh store each time::

    lossopt train -m seed=0,1,…,N-1 trainer.max_epochs=E trainer.enable_progress_bar=false
        tracking.enabled=true tracking.uri=sqlite:///<tmp>/mlflow.db
        tracking.experiment=sweep-overhead hydra.sweep.dir=<tmp>/multirun

Each repetition runs two sweeps of N jobs, with E1 and E2 epochs (order alternated
between repetitions, so that drift on a shared machine hits both alike). Jobs of a seed
sweep do the same work, so they take the same time. Each job writes its result file
(``<sweep dir>/.lossopt-results/<job>.json``) as its last act; the time between two
consecutive result files is the whole cost of one job in steady state (Hydra's per-job
set-up included). Its median over jobs 1..N-1 (job 0 pays the first-use costs, counted
in P) is ``job(E) = J + E * e``, measured inside one process, so the noise of the
process start-up (seconds, on a shared machine) does not enter it. Then::

    e = (job(E2) - job(E1)) / (E2 - E1)
    J = job(E1) - E1 * e
    P = T(N, E1) - N * job(E1)

Cross-check from wall times alone: e_total = (T(N, E2) - T(N, E1)) / (N * (E2 - E1)).
The CPU time of each sweep (user + system, from ``getrusage``) is shown next to its
wall time: wall time not spent on the CPU is waiting (sleeps, thread joins, disk) or
the machine being busy with other work. All numbers: median over the repetitions.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TARGET_JOB_S = 1.0
EXPERIMENT = "sweep-overhead"


def overrides(jobs: int, epochs: int, work: Path) -> list[str]:
    return [
        f"seed={','.join(str(s) for s in range(jobs))}",
        f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false",
        "tracking.enabled=true",
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        f"tracking.experiment={EXPERIMENT}",
        f"hydra.sweep.dir={work / 'multirun'}",
    ]


def lossopt_command() -> list[str]:
    script = Path(sys.executable).with_name("lossopt")
    return [str(script if script.exists() else shutil.which("lossopt") or "lossopt"), "train"]


# --- measure: the real CLI in a subprocess ---------------------------------------------


@dataclass
class Sweep:
    epochs: int
    wall: float  # seconds, whole command
    cpu: float  # seconds, user + system of the command
    job_ends: list[float]  # mtime of each job's result file, in job order

    def job_s(self) -> float:
        """Median time between consecutive job ends, first job excluded."""
        ends = self.job_ends
        return statistics.median(b - a for a, b in zip(ends, ends[1:], strict=False))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sweep(jobs: int, epochs: int, work: Path) -> Sweep:
    work.mkdir(parents=True)
    command = [*lossopt_command(), "-m", *overrides(jobs, epochs, work)]
    log = work / "sweep.log"
    cpu, start = _children_cpu(), time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(command, cwd=work, stdout=out, stderr=subprocess.STDOUT)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    results = sorted((work / "multirun" / ".lossopt-results").glob("*.json"), key=_job_num)
    if code != 0 or len(results) != jobs:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"sweep failed (exit {code}): {' '.join(command)}\n{tail}")
    return Sweep(epochs, wall, cpu, [p.stat().st_mtime_ns / 1e9 for p in results])


def _job_num(path: Path) -> int:
    return int(path.stem)


@dataclass
class Estimate:
    epoch: float  # e, from the job times
    epoch_total: float  # e, from the sweeps' wall times (cross-check)
    job: float  # J
    process: float  # P
    job_e1: float  # J + E1 * e
    low: Sweep
    high: Sweep


def estimate(low: Sweep, high: Sweep, jobs: int) -> Estimate:
    span = high.epochs - low.epochs
    epoch = (high.job_s() - low.job_s()) / span
    epoch_total = (high.wall - low.wall) / (jobs * span)
    job = low.job_s() - low.epochs * epoch
    process = low.wall - jobs * low.job_s()
    return Estimate(epoch, epoch_total, job, process, low.job_s(), low, high)


def measure(args: argparse.Namespace, tmp: Path) -> list[Estimate]:
    e1, e2 = args.epochs
    print(f"command: {' '.join(lossopt_command())} -m {' '.join(overrides(args.jobs, e1, tmp))}")
    print(f"         (and trainer.max_epochs={e2}; <tmp> is a fresh folder per sweep)")
    estimates = []
    for repeat in range(args.repeats):
        order = (e1, e2) if repeat % 2 == 0 else (e2, e1)
        sweeps = {e: run_sweep(args.jobs, e, tmp / f"{repeat}-e{e}") for e in order}
        est = estimate(sweeps[e1], sweeps[e2], args.jobs)
        estimates.append(est)
        print(
            f"repeat {repeat + 1}/{args.repeats} (E={order[0]} first): "
            + "  ".join(
                f"E={s.epochs}: wall {s.wall:.1f} s cpu {s.cpu:.1f} s job {s.job_s():.2f} s"
                for s in (est.low, est.high)
            )
            + f" | epoch {est.epoch:.3f} s (from walls {est.epoch_total:.3f})"
            f"  per-job fixed {est.job:.2f} s  process fixed {est.process:.1f} s",
            flush=True,
        )
    return estimates


# --- report ----------------------------------------------------------------------------


def summary(estimates: list[Estimate], args: argparse.Namespace) -> str:
    import lightning
    import mlflow
    import torch

    def med(values: Sequence[float]) -> str:
        return f"{statistics.median(values):.3f}"

    def span(values: Sequence[float]) -> str:
        return f"{min(values):.3f} – {max(values):.3f}"

    e1, e2 = args.epochs
    n = args.jobs
    job = [x.job for x in estimates]
    epoch = [x.epoch for x in estimates]
    ratio = [x.low.wall / (n * e1 * x.epoch) for x in estimates]
    command = (
        f"python benchmarks/sweep_overhead.py --jobs {n} --epochs {e1} {e2} "
        f"--repeats {args.repeats}"
    )
    rows = [
        ("per-job fixed cost J (s)", job),
        ("process fixed cost P (s)", [x.process for x in estimates]),
        ("training time per epoch e (s): train steps + validation + checkpoint", epoch),
        ("  e from the sweeps' wall times alone (cross-check)", [x.epoch_total for x in estimates]),
        (f"one job of {e1} epoch(s), steady state (s)", [x.job_e1 for x in estimates]),
        (f"sweep wall time, {n} jobs x {e1} epoch(s) (s)", [x.low.wall for x in estimates]),
        ("  its CPU time, user + system (s)", [x.low.cpu for x in estimates]),
        (f"sweep wall time, {n} jobs x {e2} epochs (s)", [x.high.wall for x in estimates]),
        ("  its CPU time, user + system (s)", [x.high.cpu for x in estimates]),
        (f"sweep wall / ({n} x {e1} x e): overhead factor", ratio),
    ]
    verdict = "met" if statistics.median(job) <= TARGET_JOB_S else "NOT met"
    lines = [
        "### Sweep overhead: fixed cost per job (basic launcher, MLflow/SQLite tracking on)",
        "",
        f"`{command}`",
        "",
        f"Each sweep: `lossopt train -m {' '.join(overrides(n, e1, Path('<tmp>')))}` "
        f"(and `trainer.max_epochs={e2}`), default experiment (mlp on digits), a fresh "
        f"store per sweep. CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
        f"threads, {platform.machine()} {platform.system()}; Python "
        f"{platform.python_version()}, torch {torch.__version__}, lightning "
        f"{lightning.__version__}, mlflow {mlflow.__version__}. Median (min – max) of "
        f"{args.repeats} repetitions. Sweep time = P + N x (J + E x e); J and e from the "
        "times between consecutive job ends inside each sweep (job 0 excluded).",
        "",
        "| quantity | median | min – max |",
        "|---|---:|---:|",
        *(f"| {name} | {med(values)} | {span(values)} |" for name, values in rows),
        "",
        f"Target: per-job fixed cost <= {TARGET_JOB_S:.1f} s on CPU with tracking on: "
        f"{verdict} (J = {statistics.median(job):.2f} s = "
        f"{statistics.median(job) / statistics.median(epoch):.1f} epochs' worth of training).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs per sweep (seed=0..N-1)")
    parser.add_argument(
        "--epochs", type=int, nargs=2, default=[1, 8], metavar=("E1", "E2"), help="E1 < E2"
    )
    parser.add_argument("--repeats", type=int, default=3, help="repetitions (pairs of sweeps)")
    args = parser.parse_args(argv)
    if not 0 < args.epochs[0] < args.epochs[1]:
        parser.error("--epochs E1 E2 needs 0 < E1 < E2")
    if args.jobs < 3:
        parser.error("--jobs must be at least 3 (job 0 is not counted)")

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lossopt-sweep-overhead-") as tmp:
        estimates = measure(args, Path(tmp))
    print(f"\n(total {time.perf_counter() - started:.0f} s)\n")
    print(summary(estimates, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
