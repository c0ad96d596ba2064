"""Throughput of a whole sweep: a hand-written script vs `lossopt train -m`, two launchers.

Usage::

    python benchmarks/sweep_throughput.py [--workload study|study60|tiny|all] [--repeats 3]

What is measured. The same sweep (every job of the study ``digits_loss_optimizer``) run
as a WHOLE process, timed from outside (``subprocess``; interpreter start, imports, and
exit included), by three runners:

(a) a hand-written PyTorch script (``hand_written`` below, run as ``python
    benchmarks/sweep_throughput.py --hand-written JOBS`` in a fresh interpreter, so it
    pays its own imports) training the jobs one after another: no tracking, no
    Lightning Trainer, no Hydra;
(b) ``lossopt train -m +experiment=digits_loss_optimizer hydra/launcher=basic``: Hydra's
    basic launcher, the jobs one after another in one process through Lightning, MLflow
    tracking on (the default SQLite store ``<cwd>/mlflow.db``);
(c) ``lossopt train -m +experiment=digits_loss_optimizer``: the same command with the
    default launcher of ``lossopt train -m`` (no launcher override; the launcher it
    used, read from the sweep's ``multirun.yaml``, is printed).

Runners alternate a, b, c then c, b, a over the repetitions, so that drift on a shared
machine hits all alike. Every run has its own fresh temporary folder as its cwd (a
fresh store; nothing is written in the caller's cwd); a run that exits non-zero, or
that does not produce every job's result, stops the benchmark with its stderr's tail.

Same work in (a) as in a lossopt job, job by job (``core/train.py``, ``core/module.py``):

- seeding: ``lightning.seed_everything(seed, workers=True)``, then the data (lossopt's
  factory ``digits_data()``, default split), the model (lossopt's ``build_mlp``, default
  width) and the loss (``lossopt.create_loss``), in that order: the same initial weights;
- data order: the DataModule's own ``train_dataloader()`` (its shuffling generator is
  seeded from ``torch.initial_seed()``, i.e. the job's seed, as in a lossopt job) and
  ``val_dataloader()``, one loader per job iterated once per epoch: the same batches;
- loss: the loss plugin called on ``lossopt.core.adapter.adapt(output, y, contract)``
  with the loss's own contract (e.g. mse compares softmax probabilities with one-hot
  targets); metrics judge ``scores(loss, output)``, as in the module;
- optimizer: ``lossopt.create_optimizer(name, groups, lr=lr)`` over the parameter
  groups of lossopt's ``no_decay_bias_and_norm`` (on by default; ``parameter_groups``
  in ``core/module.py``, replicated): with the optimizer's default weight decay (adamw:
  0.01), the 1-D parameters (biases) go to a group without decay;
  the study's ``scheduler: none`` keeps the rate constant, so (a) has none;
- metrics: lossopt's ``metrics_for`` (accuracy, macro-F1) for train and val, updated
  every step and computed once per epoch, and its ``MeanLoss`` for both losses; the
  divergence check on the epoch's training loss;
- a validation pass every epoch; the best validation accuracy is kept (strictly
  greater, as ModelCheckpoint with mode max) and the weights and optimizer state of
  the best epoch are copied in memory, as a checkpoint would save them.

Not done by (a), and so counted against lossopt: Hydra, the MLflow runs (params,
metrics, artifacts, the sweep's parent run and summary), Lightning's loop, its sanity
validation, writing checkpoints to disk, the test pass on the best checkpoint and the
confusion-matrix figure.

Agreement: each runner's best validation accuracy per job, (a) from its printed lines,
(b) and (c) from their MLflow store (child runs, tag ``mlflow.parentRunId``; params
``loss.name``, ``optimizer.name``, ``optimizer.lr``, ``seed``; metric
``best_val/accuracy``), jobs matched by (loss, optimizer, lr, seed). For each pair of
runners: the share of jobs within 0.01 of each other, and the largest difference.

Workloads: ``study`` (the study as shipped: 4 losses x 3 optimizers x 3 lr x 2 seeds =
72 jobs, 15 epochs), ``study60`` (the same grid, ``trainer.max_epochs=60``), ``tiny``
(2 losses x 2 optimizers, lr 0.01, seed 0, 2 epochs: a smoke test); ``all`` runs
study and study60. On a GPU (``gpu`` runs both): ``gpu_lenet5`` and ``gpu_cifar_cnn``,
lenet5 and cifar_cnn on ``synthetic_images`` of MNIST's and CIFAR-10's geometry (2
losses x 3 optimizers x 2 lr x 2 seeds = 24 jobs, 3 epochs), every runner on the GPU
(``trainer.accelerator=gpu``, float32; (a) moves each batch there as a loop would);
``cpu_lenet5_tiny`` is their smoke test on the CPU.
Times: median over repetitions of each runner's wall time; jobs per
hour from it; ratios c/a and c/b of the medians, and the median of the ratios paired
within each repetition (it cancels the machine's drift between repetitions).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import math
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

EXPERIMENT = "digits_loss_optimizer"
GRID_KEYS = ("loss", "optimizer", "optimizer.lr", "seed")
EPOCHS_KEY = "trainer.max_epochs"
WORKLOADS: dict[str, tuple[str, dict[str, str]]] = {
    "study": ("the study as shipped", {}),
    "study60": ("the study, 60 epochs", {EPOCHS_KEY: "60"}),
    "tiny": (
        "2 losses x 2 optimizers, 2 epochs",
        {
            "loss": "cross_entropy,mse",
            "optimizer": "sgd,adamw",
            "optimizer.lr": "0.01",
            "seed": "0",
            EPOCHS_KEY: "2",
        },
    ),
}
# Image models on one GPU, on synthetic images of MNIST's and CIFAR-10's geometry
# (8400 training images): 2 losses x 3 optimizers x 2 lr x 2 seeds, 3 epochs.
GPU_GRID = {
    "loss": "cross_entropy,focal",
    "optimizer": "sgd,adam,adamw",
    "optimizer.lr": "0.03,0.003",
    "seed": "0,1",
    EPOCHS_KEY: "3",
}
GPU_WORKLOADS: dict[str, tuple[str, str, dict[str, str]]] = {
    # name: (title, model, data overrides)
    "gpu_lenet5": ("lenet5 on 1x28x28 synthetic images, GPU", "lenet5", {}),
    "gpu_cifar_cnn": (
        "cifar_cnn on 3x32x32 synthetic images, GPU",
        "cifar_cnn",
        {"data.channels": "3", "data.size": "32"},
    ),
    # The same work on the CPU, small: a test of the runners, not a measurement.
    "cpu_lenet5_tiny": (
        "lenet5 on 1x28x28 synthetic images (2000, noise 2), CPU smoke test",
        "lenet5",
        {"data.n_samples": "2000", "data.noise": "2"},
    ),
}
RUNNERS = ("a", "b", "c")
PAIRS = (("a", "b"), ("a", "c"), ("b", "c"))
TOLERANCE = 0.01  # best validation accuracies within this count as agreeing
# Targets on the ratio of median wall times, per workload: (ratio, at most).
TARGETS: dict[str, list[tuple[str, float]]] = {
    "study": [("c/b", 0.20), ("c/a", 1.0)],
    "study60": [("c/a", 0.5)],
}
JOB_PREFIX = "JOB "  # (a)'s parseable line per job

Key = tuple[str, str, float, int]  # (loss, optimizer, lr, seed)


# --- the workloads ---------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    base: list[str]  # what `lossopt train -m` is given first: the study, or data and model
    overrides: list[str]  # the grid and epochs, added after `base`
    jobs: list[Key]
    epochs: int
    data: dict[str, str]  # data plugin: name and parameters, as (a) builds it
    model: str
    device: str


def workload(name: str) -> Workload:
    if name in GPU_WORKLOADS:
        return image_workload(name)
    return study_workload(name)


def _jobs(values: dict[str, str]) -> list[Key]:
    losses, optimizers, lrs, seeds = (values[k].split(",") for k in GRID_KEYS)
    return [
        (loss, opt, float(lr), int(seed))
        for loss, opt, lr, seed in itertools.product(losses, optimizers, lrs, seeds)
    ]


def study_workload(name: str) -> Workload:
    """The study's grid and epochs as shipped, with the workload's overrides applied."""
    import yaml

    path = resources.files("lossopt.experiments") / "experiment" / f"{EXPERIMENT}.yaml"
    study = yaml.safe_load(path.read_text())
    # (a) hand-writes exactly this setting: check that the study still is it.
    defaults = {k: v for d in study["defaults"] for k, v in d.items()}
    expected = {"override /data": "digits", "override /model": "mlp", "override /scheduler": "none"}
    if defaults != expected or set(study["hydra"]["sweeper"]["params"]) != set(GRID_KEYS):
        raise RuntimeError(f"{path}: not the study this benchmark hand-writes ({expected})")
    title, changes = WORKLOADS[name]
    values = {k: str(v) for k, v in study["hydra"]["sweeper"]["params"].items()}
    values[EPOCHS_KEY] = str(study["trainer"]["max_epochs"])
    values.update(changes)
    overrides = [f"{k}={v}" for k, v in changes.items()]
    return Workload(
        name, title, [f"+experiment={EXPERIMENT}"], overrides, _jobs(values),
        int(values[EPOCHS_KEY]), {"name": "digits"}, "mlp", "cpu",
    )  # fmt: skip


def image_workload(name: str) -> Workload:
    """An image model on synthetic images, the grid given in full on the command line."""
    title, model, data = GPU_WORKLOADS[name]
    device = "cpu" if name.startswith("cpu") else "cuda"
    values = dict(GPU_GRID)
    if device == "cpu":
        values.update(optimizer="sgd,adam", seed="0", **{"optimizer.lr": "0.003", EPOCHS_KEY: "2"})
    base = [
        "data=synthetic_images", *(f"{k}={v}" for k, v in data.items()), f"model={model}",
        "scheduler=none", f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
    ]  # fmt: skip
    params = {k.removeprefix("data."): v for k, v in data.items()}
    return Workload(
        name, title, base, [f"{k}={v}" for k, v in values.items()], _jobs(values),
        int(values[EPOCHS_KEY]), {"name": "synthetic_images", **params}, model, device,
    )  # fmt: skip


def job_name(key: Key) -> str:
    loss, optimizer, lr, seed = key
    return f"{loss} {optimizer} {lr:g} {seed}"


# --- (a) the hand-written script -------------------------------------------------------


def hand_written(
    jobs: list[Key], epochs: int, data_params: dict, model_name: str, device_name: str
) -> None:
    """Train ``jobs`` one after another in plain PyTorch, as lossopt trains each job;
    print one ``JOB`` line per job with its best validation accuracy."""
    import copy

    import lightning
    import torch

    import lossopt
    from lossopt.core.adapter import adapt, scores
    from lossopt.core.configs import parameters
    from lossopt.core.module import MeanLoss, metrics_for
    from lossopt.core.registry import registry

    device = torch.device(device_name)
    data_params = dict(data_params)
    make_data = registry("data").spec(data_params.pop("name")).factory
    params = {k: json.loads(v) for k, v in data_params.items()}  # numbers, as Hydra reads them
    make_model = registry("model").spec(model_name).factory
    for loss_name, optimizer_name, lr, seed in jobs:
        lightning.seed_everything(seed, workers=True, verbose=False)
        data = make_data(**params)
        model = make_model(list(data.input_shape), data.num_outputs).to(device)
        loss_fn = lossopt.create_loss(loss_name).to(device)
        contract = registry("loss").spec(loss_name).contracts[data.task]
        spec = registry("optimizer").spec(optimizer_name)
        weight_decay = {p.name: p.default for p in parameters(spec)}.get("weight_decay")
        optimizer = lossopt.create_optimizer(
            optimizer_name, param_groups([model, loss_fn], weight_decay), lr=lr
        )
        metrics = metrics_for(data.task, data.num_outputs).to(device)
        train_metrics, val_metrics = metrics.clone(prefix="train/"), metrics.clone(prefix="val/")
        train_loss, val_loss = MeanLoss().to(device), MeanLoss().to(device)
        train_loader, val_loader = data.train_dataloader(), data.val_dataloader()

        best, checkpoint = -math.inf, None
        for epoch in range(epochs):
            model.train()
            loss_fn.train()
            for x, y in train_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                output = model(x)
                loss = loss_fn(*adapt(output, y, contract, data.task))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                train_metrics.update(scores(loss_fn, output), y)
                train_loss.update(loss, len(x))
            train = {**train_metrics.compute(), "train/loss": train_loss.compute()}
            train_metrics.reset()
            train_loss.reset()
            if not torch.isfinite(train["train/loss"]):
                raise RuntimeError(f"{loss_name} {optimizer_name} {lr} {seed}: diverged")

            model.eval()
            loss_fn.eval()
            with torch.inference_mode():
                for x, y in val_loader:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    output = model(x)
                    val_loss.update(loss_fn(*adapt(output, y, contract, data.task)), len(x))
                    val_metrics.update(scores(loss_fn, output), y)
            val = {**val_metrics.compute(), "val/loss": val_loss.compute()}
            val_metrics.reset()
            val_loss.reset()
            accuracy = float(val["val/accuracy"])
            if accuracy > best:  # ModelCheckpoint, mode max: strictly better
                best = accuracy
                checkpoint = {
                    "epoch": epoch,
                    "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
                    "optimizer": copy.deepcopy(optimizer.state_dict()),
                }
        assert checkpoint is not None
        print(
            f"{JOB_PREFIX}{json.dumps([loss_name, optimizer_name, lr, seed])} "
            f"best_val_accuracy={best!r} best_epoch={checkpoint['epoch']} "
            f"train_loss={float(train['train/loss'])!r}",
            flush=True,
        )


def param_groups(modules: list, weight_decay: float | None) -> list[dict]:
    """lossopt's groups (``no_decay_bias_and_norm``, on by default): with weight decay,
    the 1-D parameters (biases, normalization weights) go to a group without it."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if not weight_decay:
        return [{"params": params}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = ({"params": decay}, {"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def parse_hand_written(stdout: str) -> dict[Key, float]:
    values = {}
    for line in stdout.splitlines():
        if line.startswith(JOB_PREFIX):
            key_text, rest = line[len(JOB_PREFIX) :].split("] ", 1)
            loss, optimizer, lr, seed = json.loads(key_text + "]")
            fields = dict(item.split("=", 1) for item in rest.split())
            values[(loss, optimizer, float(lr), int(seed))] = float(fields["best_val_accuracy"])
    return values


# --- (b), (c): the MLflow store of a lossopt sweep ------------------------------------


def read_store(db: Path) -> dict[Key, float]:
    """Best validation accuracy per child run of the sweep stored in ``db``."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        children = {
            run: status
            for run, status in con.execute(
                "SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "WHERE t.key = 'mlflow.parentRunId'"
            )
        }
        params: dict[str, dict[str, str]] = {run: {} for run in children}
        for run, key, value in con.execute(
            "SELECT run_uuid, key, value FROM params "
            "WHERE key IN ('loss.name', 'optimizer.name', 'optimizer.lr', 'seed')"
        ):
            if run in params:
                params[run][key] = value
        best = {
            run: value
            for run, value in con.execute(
                "SELECT run_uuid, value FROM latest_metrics WHERE key = 'best_val/accuracy'"
            )
        }
    values = {}
    for run, status in children.items():
        p = params[run]
        key = (p["loss.name"], p["optimizer.name"], float(p["optimizer.lr"]), int(p["seed"]))
        if status != "FINISHED" or run not in best or key in values:
            raise RuntimeError(f"{db}: child run {run} {key}: {status}, or no result, or twice")
        values[key] = float(best[run])
    return values


def launcher_of(work: Path) -> str:
    """The launcher a lossopt sweep used, from its ``multirun.yaml``."""
    import yaml

    for path in work.glob("multirun/**/multirun.yaml"):
        launcher = yaml.safe_load(path.read_text()).get("hydra", {}).get("launcher") or {}
        return str(launcher.get("_target_", "?")).rsplit(".", 1)[-1]
    return "?"


# --- running a runner ------------------------------------------------------------------


@dataclass
class Run:
    wall: float  # seconds, the whole process
    cpu: float  # seconds, user + system of the process
    best: dict[Key, float]  # best validation accuracy per job
    launcher: str
    grouping: str  # how the launcher grouped the jobs, as it printed it


def grouping_of(output: str) -> str:
    found = re.search(r"^\s*(\d+ jobs: .*)$", output, re.MULTILINE)
    return found.group(1).strip() if found else "-"


def lossopt_command() -> list[str]:
    script = Path(sys.executable).with_name("lossopt")
    return [str(script if script.exists() else shutil.which("lossopt") or "lossopt"), "train"]


def command(runner: str, load: Workload) -> list[str]:
    if runner == "a":
        spec = {
            "jobs": load.jobs, "epochs": load.epochs, "data": load.data,
            "model": load.model, "device": load.device,
        }  # fmt: skip
        return [sys.executable, str(Path(__file__).resolve()), "--hand-written", json.dumps(spec)]
    launcher = ["hydra/launcher=basic"] if runner == "b" else []
    return [*lossopt_command(), "-m", *load.base, *launcher, *load.overrides]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(runner: str, load: Workload, work: Path) -> Run:
    work.mkdir(parents=True)
    cmd = command(runner, load)
    out, err = work / "stdout.log", work / "stderr.log"
    cpu, start = _children_cpu(), time.perf_counter()
    with out.open("w") as stdout, err.open("w") as stderr:
        code = subprocess.call(cmd, cwd=work, stdout=stdout, stderr=stderr)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu

    def fail(why: str) -> RuntimeError:
        tail = "\n".join(err.read_text().splitlines()[-40:])
        shown = " ".join(cmd) if runner != "a" else " ".join(cmd[:3]) + " '<jobs>'"
        return RuntimeError(f"runner ({runner}) {why}: {shown}\n--- stderr tail ---\n{tail}")

    if code != 0:
        raise fail(f"exited with status {code}")
    try:
        if runner == "a":
            best, launcher = parse_hand_written(out.read_text()), "-"
        else:
            best, launcher = read_store(work / "mlflow.db"), launcher_of(work)
        grouping = grouping_of(out.read_text() + err.read_text())
    except (RuntimeError, sqlite3.Error, KeyError, ValueError) as exc:
        raise fail(f"left no readable results ({exc})") from exc
    if set(best) != set(load.jobs):
        missing = sorted(set(load.jobs) - set(best))[:4]
        raise fail(f"gave {len(best)} of {len(load.jobs)} jobs (missing e.g. {missing})")
    shutil.rmtree(work)  # checkpoints and stores of a long study add up
    return Run(wall, cpu, best, launcher, grouping)


# --- the benchmark ---------------------------------------------------------------------


@dataclass
class Row:
    load: Workload
    runs: list[dict[str, Run]]  # per repetition, per runner

    def wall(self, runner: str) -> float:
        return statistics.median(r[runner].wall for r in self.runs)

    def ratio(self, pair: str) -> float:
        x, y = pair.split("/")
        return self.wall(x) / self.wall(y)

    def paired(self, pair: str) -> float:
        x, y = pair.split("/")
        return statistics.median(r[x].wall / r[y].wall for r in self.runs)

    def jobs_per_hour(self, runner: str) -> float:
        return len(self.load.jobs) * 3600 / self.wall(runner)

    def agreement(self, x: str, y: str) -> tuple[float, float]:
        """Share of jobs (over all repetitions) within TOLERANCE, and the largest gap."""
        gaps = [abs(r[x].best[k] - r[y].best[k]) for r in self.runs for k in self.load.jobs]
        return sum(g <= TOLERANCE for g in gaps) / len(gaps), max(gaps)


def warm_up() -> None:
    """Load what every runner imports once (not timed): the first timed run does not pay
    for reading the libraries from a cold disk."""
    code = "import torch, lightning, mlflow, hydra, sklearn, torchmetrics, lossopt.core.train"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def bench(name: str, args: argparse.Namespace, tmp: Path) -> Row:
    load = workload(name)
    print(f"\n== {name}: {load.title}: {len(load.jobs)} jobs x {load.epochs} epochs", flush=True)
    for runner in RUNNERS:
        shown = command(runner, load)
        text = " ".join(shown[:3]) + " '<jobs>'" if runner == "a" else " ".join(shown)
        print(f"   ({runner}) {text}")
    runs = []
    for repeat in range(args.repeats):
        order = RUNNERS if repeat % 2 == 0 else RUNNERS[::-1]
        done = {key: run(key, load, tmp / f"{name}-{repeat}-{key}") for key in order}
        runs.append(done)
        walls = "  ".join(f"{k} {done[k].wall:.1f} s (cpu {done[k].cpu:.1f})" for k in RUNNERS)
        print(
            f"   repeat {repeat + 1}/{args.repeats} ({','.join(order)}): wall {walls} | "
            f"c/a {done['c'].wall / done['a'].wall:.2f}  c/b {done['c'].wall / done['b'].wall:.2f}"
            f" | launchers b {done['b'].launcher}, c {done['c'].launcher}"
            f" | c grouped: {done['c'].grouping}",
            flush=True,
        )
    print("   best val accuracy per job (loss optimizer lr seed: a b c, first repetition):")
    for key in load.jobs:
        values = "  ".join(f"{k} {runs[0][k].best[key]:.4f}" for k in RUNNERS)
        spread = max(
            max(r[k].best[key] for r in runs) - min(r[k].best[key] for r in runs) for k in RUNNERS
        )
        varies = f"  (varies over repetitions by up to {spread:.4f})" if spread else ""
        print(f"   job {job_name(key)}: {values}{varies}")
    return Row(load, runs)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("torch", "lightning", "mlflow", "hydra-core")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}, {platform.machine()} {platform.system()}; "
        f"Python {platform.python_version()}, {versions}"
    )


def summary(rows: list[Row], args: argparse.Namespace) -> str:
    launchers = sorted({r[k].launcher for row in rows for r in row.runs for k in "bc"})
    lines = [
        "### Sweep throughput: whole processes, hand-written (a) vs lossopt basic (b) "
        "vs lossopt default launcher (c)",
        "",
        f"`python benchmarks/sweep_throughput.py --workload {args.workload} "
        f"--repeats {args.repeats}`",
        "",
        f"{machine()}. Wall time of the whole process (start-up and exit included), "
        f"median of {args.repeats} alternating repetitions; MLflow tracking on SQLite in "
        f"(b) and (c); launchers used by b, c: {', '.join(launchers)}.",
        "",
        "| workload | jobs x epochs | wall a (s) | wall b (s) | wall c (s) | jobs/h a "
        "| jobs/h b | jobs/h c | c/a | paired c/a | c/b | paired c/b "
        f"| a~b <={TOLERANCE} (max diff) | a~c | b~c |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        walls = " | ".join(f"{row.wall(k):.2f}" for k in RUNNERS)
        per_hour = " | ".join(f"{row.jobs_per_hour(k):.0f}" for k in RUNNERS)
        ratios = " | ".join(f"{row.ratio(p):.3f} | {row.paired(p):.3f}" for p in ("c/a", "c/b"))
        agree = " | ".join(
            f"{share:.0%} ({gap:.4f})" for share, gap in (row.agreement(*p) for p in PAIRS)
        )
        lines.append(
            f"| {row.load.name} | {len(row.load.jobs)} x {row.load.epochs} | {walls} "
            f"| {per_hour} | {ratios} | {agree} |"
        )
    lines += [
        "",
        "Ratios: of the median walls, and paired (the median over repetitions of the "
        "ratio within each). Agreement: share of jobs (all repetitions) whose best "
        f"validation accuracies differ by <= {TOLERANCE}, and the largest difference.",
        "Targets (ratio of medians): study c/b <= 0.20 and c/a <= 1.0; study60 c/a <= 0.5.",
    ]
    for row in rows:
        targets = TARGETS.get(row.load.name)
        if not targets:
            lines.append(f"- {row.load.name}: no target; c grouped {row.runs[0]['c'].grouping}")
            continue
        verdicts = [
            f"{pair} {row.ratio(pair):.3f} (target <= {limit:.2f}): "
            f"{'met' if row.ratio(pair) <= limit else 'NOT met'}"
            for pair, limit in targets
        ]
        lines.append(f"- {row.load.name}: {'; '.join(verdicts)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--workload",
        choices=[*WORKLOADS, *GPU_WORKLOADS, "all", "gpu"],
        default="study",
        help="all: study and study60; gpu: gpu_lenet5 and gpu_cifar_cnn",
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions")
    parser.add_argument(
        "--hand-written", metavar="JOBS", help="internal: be runner (a) for the JSON {jobs, epochs}"
    )
    args = parser.parse_args(argv)
    if args.hand_written:
        spec = json.loads(args.hand_written)
        jobs = [tuple(job) for job in spec["jobs"]]
        hand_written(jobs, int(spec["epochs"]), spec["data"], spec["model"], spec["device"])
        return 0
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    started = time.perf_counter()
    groups = {"all": ["study", "study60"], "gpu": ["gpu_lenet5", "gpu_cifar_cnn"]}
    names = groups.get(args.workload, [args.workload])
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    warm_up()
    with tempfile.TemporaryDirectory(prefix="lossopt-sweep-throughput-") as tmp:
        rows = [bench(name, args, Path(tmp)) for name in names]
    print(f"\n(total {time.perf_counter() - started:.0f} s)\n")
    print(summary(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
