"""Per-step overhead of lossopt (Lightning + MLflow tracking) over a hand-written loop.

Usage::

    python benchmarks/overhead.py [--repeats 5] [--workload default|conv|resnet|all]
                                  [--epochs 6]

Four trainers run the same work side by side in one process, in the order a, b, c, d
then d, c, b, a, … over the repetitions so that drift on a shared machine hits all alike:

(a) a hand-written PyTorch loop;
(b) lossopt's real path: ``lossopt.core.app.compose(overrides)`` then
    ``lossopt.core.train.run(cfg, output_dir)``, MLflow tracking ON (a SQLite store in a
    temporary directory), progress bar off, ``trainer.log_every_n_steps`` at lossopt's
    default;
(c) the smallest LightningModule doing (a)'s training step in a Trainer with no
    logger, checkpoint or progress bar: Lightning's own per-step floor, which splits
    the overhead b − a into Lightning's loop (c − a) and what lossopt adds (b − c);
(d) loop (a) itself run through Lightning Fabric (``Fabric.setup`` of the model,
    optimizer and loaders, ``fabric.backward``): the floor of Lightning's lighter API,
    where the loop is the caller's own, for comparison with (c).

Same work in (a) and (b): the model object built by lossopt's model plugin from the same
composed config, the same seed (hence the same initial weights), the same DataModule
(its ``train_dataloader()`` / ``val_dataloader()``: same batches, same order), the same
loss (``nn.CrossEntropyLoss``) and optimizer (``torch.optim.Adam``, the config's lr, one
parameter group), and the same metrics per step: lossopt's own ``metrics_for``
collection (torchmetrics accuracy and macro-F1) updated on every training batch and
computed once per epoch, the training loss accumulated as a tensor (no ``.item()`` per
step, as in lossopt). Each epoch both run a validation pass (loss + the same metrics)
and save a checkpoint (model and optimizer state) when the validation accuracy improves,
as lossopt's ModelCheckpoint does. The best validation accuracy of both is printed:
equal values show the two did the same training. What (a) does not do, and is therefore
counted as lossopt's overhead: Lightning's loop machinery and hooks, the loss adapter,
the mean-loss metric, ``self.log`` calls, MLflow logging (every ``log_every_n_steps``
steps and per epoch), Lightning's sanity validation and the test pass (the last two are
outside the timed window anyway).

How (b) is timed without changing lossopt: Lightning loads extra Trainer callbacks
from the entry-point group ``lightning.pytorch.callbacks_factory`` (its documented
extension point). The benchmark registers a throw-away ``.dist-info`` folder with such
an entry point for this process only, so every Trainer that ``run()`` builds gets a
probe callback that records ``time.perf_counter()`` at the start of each training epoch
and batch (``on_train_batch_start``, i.e. after the batch was fetched). The hand-written
loop records the same two instants at the same places. From these timestamps:

- ms/step: within one epoch, (last batch start − first batch start) / (batches − 1):
  whole steps, batch fetch included, the periodic MLflow logging of every
  ``log_every_n_steps``-th step included (a mean, not a per-step median, so a cost
  paid every 10th step is not hidden), validation, checkpointing and epoch-end
  logging excluded. The first ``--warmup-epochs`` epochs of every run are dropped.
  Each run gives the median over its steady epochs; the table shows the median over
  repetitions, and the ratio of those medians. Because the runners of one repetition
  run next to each other, their ratios are also paired per repetition; the median of
  those paired ratios is printed too (it cancels the machine's drift between
  repetitions).
- ms/epoch: from one epoch start to the next (training steps + validation +
  checkpoint + epoch-end logging): what a whole run costs per epoch in steady state.
  Start-up (imports, config, MLflow run creation, sanity check) and the test pass are
  excluded from both numbers.

Workloads (CPU): per-step framework overhead is roughly constant (a fraction of a
millisecond), so its relative weight depends on the compute per step.

- ``default``: lossopt's default experiment, ``mlp`` (64 → 128 → 10) on the 8×8
  ``digits`` set, batch 64: ~0.3 ms of compute per step, the worst case for the ratio.
- ``conv``: ``lenet5`` on ``digits`` (padded to 28×28 by the model: the same geometry
  and per-step compute as LeNet-5 on MNIST, the classic CPU workload, without
  needing dataset files), batch 64: a few ms per step, representative of the small
  conv nets lossopt sweeps on CPU.
- ``resnet``: torchvision's ``resnet18`` on ``digits`` (its stem sized to 8×8 inputs),
  batch 64: ~100 ms per step, a model whose compute dominates.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import math
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

WORKLOADS: dict[str, tuple[str, list[str]]] = {
    "default": ("mlp on digits (lossopt's default experiment)", []),
    "conv": ("lenet5 on digits (MNIST geometry, 28x28)", ["model=lenet5"]),
    "resnet": ("resnet18 on digits (sized to 8x8 inputs)", ["model=resnet18"]),
}
TARGET_RATIO = 1.10
PROBE_GROUP = "lightning.pytorch.callbacks_factory"


@dataclass
class Timeline:
    """``perf_counter()`` at the start of every training epoch and training batch."""

    clock: Callable[[], float] = time.perf_counter
    epoch_starts: list[float] = field(default_factory=list)
    batch_starts: list[list[float]] = field(default_factory=list)

    def start_epoch(self) -> None:
        self.epoch_starts.append(self.clock())
        self.batch_starts.append([])

    def start_batch(self) -> None:
        self.batch_starts[-1].append(self.clock())

    def step_ms(self, warmup: int) -> float:
        """Median over steady epochs of the mean time per training step in the epoch."""
        per_epoch = [
            1000 * (b[-1] - b[0]) / (len(b) - 1) for b in self.batch_starts[warmup:] if len(b) > 1
        ]
        return statistics.median(per_epoch)

    def epoch_ms(self, warmup: int) -> float:
        """Median over steady epochs of epoch start → next epoch start."""
        starts = self.epoch_starts[warmup:]
        return statistics.median(1000 * (b - a) for a, b in zip(starts, starts[1:], strict=False))

    def steps_per_epoch(self) -> int:
        return len(self.batch_starts[-1])


@dataclass
class Result:
    timeline: Timeline
    best_val_accuracy: float


# --- (b) lossopt, timed by a probe callback loaded through Lightning's entry point ----

_ACTIVE: list[Timeline] = []  # the timeline the next Trainer's probe writes to


class _StepProbe(Callback):
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.timeline.start_epoch()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.timeline.start_batch()


def _probe_callbacks() -> list[Callback]:
    """The entry point's factory: a probe while a lossopt run is being timed."""
    return [_StepProbe(_ACTIVE[-1])] if _ACTIVE else []


def register_probe(folder: Path) -> None:
    """Make Lightning load ``_probe_callbacks`` in every Trainer of this process."""
    dist = folder / "lossopt_overhead_probe-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lossopt-overhead-probe\n")
    (dist / "entry_points.txt").write_text(
        f"[{PROBE_GROUP}]\nstep_probe = {__name__}:_probe_callbacks\n"
    )
    sys.path.append(str(folder))
    importlib.invalidate_caches()


def lossopt_run(overrides: list[str], output_dir: Path) -> Result:
    from lossopt.core.composition import compose
    from lossopt.core.train import run

    cfg = compose(overrides)
    timeline = Timeline()
    _ACTIVE.append(timeline)
    try:
        result = run(cfg, output_dir)
    finally:
        _ACTIVE.pop()
    if not timeline.epoch_starts:
        raise RuntimeError("the step probe was not called: Lightning did not load it")
    return Result(timeline, result.objective)


# --- (a) the hand-written loop --------------------------------------------------------


@dataclass
class Work:
    """What every trainer here gets alike, built by lossopt's plugins from one config."""

    cfg: Any
    data: Any
    model: torch.nn.Module
    train_metrics: Any
    val_metrics: Any


def same_work(overrides: list[str]) -> Work:
    from lightning.fabric.utilities.seed import seed_everything

    from lossopt.core.composition import compose
    from lossopt.core.configs import build, plugin_values
    from lossopt.core.module import metrics_for

    cfg = compose(overrides)
    seed_everything(cfg.seed, workers=True, verbose=False)  # as run(): same init, same batches
    data = build("data", cfg.data.name, plugin_values(cfg, "data"))
    model = build("model", cfg.model.name, plugin_values(cfg, "model"))
    metrics = metrics_for(data.task, data.num_outputs)  # the very metrics lossopt updates
    return Work(cfg, data, model, metrics.clone(prefix="train/"), metrics.clone(prefix="val/"))


def hand_written_run(overrides: list[str], output_dir: Path, fabric: bool = False) -> Result:
    """The same training as lossopt's, written out in plain PyTorch; with ``fabric``,
    the model, optimizer and loaders go through Lightning Fabric's wrappers."""
    work = same_work(overrides)
    cfg, data, model = work.cfg, work.data, work.model
    train_metrics, val_metrics = work.train_metrics, work.val_metrics
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward
    if fabric:
        from lightning.fabric import Fabric

        runner = Fabric(accelerator="cpu", devices=1)
        model, optimizer = runner.setup(model, optimizer)
        train_loader, val_loader = runner.setup_dataloaders(train_loader, val_loader)
        backward = runner.backward
    checkpoint = output_dir / "best.pt"
    output_dir.mkdir(parents=True, exist_ok=True)
    timeline, best = Timeline(), -math.inf

    for epoch in range(cfg.trainer.max_epochs):
        timeline.start_epoch()
        model.train()
        loss_sum, count = torch.zeros(()), 0
        for x, y in train_loader:
            timeline.start_batch()
            output = model(x)
            loss = loss_fn(output, y)
            optimizer.zero_grad(set_to_none=True)
            backward(loss)
            optimizer.step()
            train_metrics.update(output.detach(), y)
            loss_sum += loss.detach() * len(x)
            count += len(x)
        train = {**train_metrics.compute(), "train/loss": loss_sum / count}
        train_metrics.reset()
        if not torch.isfinite(train["train/loss"]):
            raise RuntimeError("diverged")

        model.eval()
        val_loss, val_count = torch.zeros(()), 0
        with torch.no_grad():
            for x, y in val_loader:
                output = model(x)
                val_loss += loss_fn(output, y) * len(x)
                val_count += len(x)
                val_metrics.update(output, y)
        val = {**val_metrics.compute(), "val/loss": val_loss / val_count}
        val_metrics.reset()
        accuracy = float(val["val/accuracy"])
        if accuracy > best:
            best = accuracy
            state = {"epoch": epoch, "model": model.state_dict(), "opt": optimizer.state_dict()}
            torch.save(state, checkpoint)
    return Result(timeline, best)


# --- (c) Lightning's own floor ------------------------------------------------------


def bare_lightning_run(overrides: list[str], output_dir: Path) -> Result:
    """The hand-written training step as the smallest LightningModule, in a Trainer with
    no logger, checkpoint or progress bar: what Lightning's loop alone costs per step.
    Training steps only (its validation is skipped), so only ms/step is comparable."""
    import lightning as L

    work = same_work(overrides)

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.train_metrics = work.model, work.train_metrics

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
            x, y = batch
            output = self.model(x)
            self.train_metrics.update(output.detach(), y)
            return torch.nn.functional.cross_entropy(output, y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.model.parameters(), lr=work.cfg.optimizer.lr)

    timeline = Timeline()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=work.cfg.trainer.max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[_StepProbe(timeline)],
        default_root_dir=str(output_dir),
    )
    trainer.fit(Bare(), train_dataloaders=work.data.train_dataloader())
    return Result(timeline, math.nan)


# --- the benchmark --------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    step: dict[str, float]  # median ms/step of each runner
    epoch: dict[str, float]  # median ms/epoch of a and b
    steps_per_epoch: int
    paired: dict[str, float]  # median over repetitions of b/a, c/a, d/a in that repetition

    @property
    def ratio(self) -> float:
        return self.step["b"] / self.step["a"]


RUNNERS: dict[str, Callable[[list[str], Path], Result]] = {
    "a": hand_written_run,
    "b": lossopt_run,
    "c": bare_lightning_run,
    "d": functools.partial(hand_written_run, fabric=True),
}


def bench(workload: str, args: argparse.Namespace, tmp: Path) -> Row:
    from lossopt.core.composition import compose

    title, extra = WORKLOADS[workload]
    log_every = compose([]).trainer.log_every_n_steps  # lossopt's default

    def overrides(epochs: int) -> list[str]:
        return [
            *extra,
            f"trainer.max_epochs={epochs}",
            "trainer.enable_progress_bar=false",
            f"trainer.log_every_n_steps={log_every}",
            "tracking.enabled=true",
            f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
            f"tracking.experiment=overhead-{workload}",
        ]

    print(f"\n== {workload}: {title}")
    print(f"   lossopt overrides: {' '.join(overrides(args.epochs))}")
    # Warm-up (not counted): imports, first-use costs, the SQLite schema.
    for key, runner in RUNNERS.items():
        runner(overrides(args.warmup_epochs + 2), tmp / workload / f"warmup-{key}")

    samples: dict[str, list[tuple[float, float]]] = {key: [] for key in RUNNERS}
    steps = 0
    for repeat in range(args.repeats):
        order = "".join(RUNNERS) if repeat % 2 == 0 else "".join(reversed(RUNNERS))
        results = {
            key: RUNNERS[key](overrides(args.epochs), tmp / workload / f"{repeat}-{key}")
            for key in order
        }
        for key, result in results.items():
            timeline = result.timeline
            samples[key].append(
                (timeline.step_ms(args.warmup_epochs), timeline.epoch_ms(args.warmup_epochs))
            )
            steps = timeline.steps_per_epoch()
        step = {key: samples[key][-1][0] for key in RUNNERS}
        timings = "  ".join(f"{key} {step[key]:.3f}" for key in RUNNERS)
        accuracies = "  ".join(f"{key} {results[key].best_val_accuracy:.4f}" for key in "abd")
        print(
            f"   repeat {repeat + 1}/{args.repeats} ({','.join(order)}): ms/step {timings}  "
            f"ratio b/a {step['b'] / step['a']:.2f} | best val acc {accuracies}"
        )

    def median(key: str, index: int) -> float:
        return statistics.median(s[index] for s in samples[key])

    def paired(key: str) -> float:
        pairs = zip(samples[key], samples["a"], strict=True)
        return statistics.median(x[0] / a[0] for x, a in pairs)

    return Row(
        workload,
        {key: median(key, 0) for key in RUNNERS},
        {key: median(key, 1) for key in "ab"},
        steps,
        {key: paired(key) for key in "bcd"},
    )


def summary(rows: list[Row], args: argparse.Namespace) -> str:
    import lightning
    import mlflow

    command = (
        f"python benchmarks/overhead.py --repeats {args.repeats} --workload {args.workload} "
        f"--epochs {args.epochs} --warmup-epochs {args.warmup_epochs}"
    )
    lines = [
        "### Overhead: lossopt (Lightning + MLflow/SQLite tracking) vs a hand-written loop",
        "",
        f"`{command}`",
        "",
        f"CPU, {torch.get_num_threads()} torch threads, {platform.machine()} "
        f"{platform.system()}; Python {platform.python_version()}, torch "
        f"{torch.__version__}, lightning {lightning.__version__}, mlflow {mlflow.__version__}. "
        f"Batch 64, {rows[0].steps_per_epoch} steps/epoch, {args.epochs} epochs per run "
        f"({args.warmup_epochs} dropped), median of {args.repeats} alternating repetitions.",
        "",
        "| workload | (a) hand-written | (d) Fabric | (c) bare Trainer | (b) lossopt "
        "| ratio b/a | paired b/a | paired c/a | paired d/a | ms/epoch a / b |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        step, paired = r.step, r.paired
        lines.append(
            f"| {WORKLOADS[r.workload][0].split(' (')[0]} | {step['a']:.3f} | {step['d']:.3f} "
            f"| {step['c']:.3f} | {step['b']:.3f} | **{r.ratio:.2f}** | {paired['b']:.2f} "
            f"| {paired['c']:.2f} | {paired['d']:.2f} | {r.epoch['a']:.1f} / {r.epoch['b']:.1f} |"
        )
    lines += [
        "",
        "ms/step columns: steady-state training steps (batch fetch, forward, backward, "
        "optimizer, metric updates, per-step logging); ms/epoch adds validation, "
        "checkpointing and epoch-end logging. c/a is the floor of any tool built on "
        "Lightning's Trainer, d/a that of a loop of one's own on Lightning Fabric; b against "
        "c is what lossopt adds on top of the Trainer (loss adapter, epoch metrics, "
        f"checkpoint callback, MLflow logging). Target: ratio <= {TARGET_RATIO:.2f}.",
    ]
    for r in rows:
        verdict = "met" if r.ratio <= TARGET_RATIO else "NOT met"
        lines.append(f"- {r.workload}: ratio {r.ratio:.2f}, target {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating a/b repetitions")
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs per run")
    parser.add_argument(
        "--warmup-epochs", type=int, default=1, help="first epochs of each run not timed"
    )
    args = parser.parse_args(argv)
    if args.epochs < args.warmup_epochs + 2:
        parser.error("--epochs must be at least --warmup-epochs + 2 (two steady epochs)")

    # Quiet: Lightning's and MLflow's start-up messages say nothing about the timing.
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)

    started = time.perf_counter()
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    with tempfile.TemporaryDirectory(prefix="lossopt-overhead-") as tmp:
        register_probe(Path(tmp) / "probe")
        rows = [bench(w, args, Path(tmp)) for w in workloads]
    print(f"\n(total {time.perf_counter() - started:.0f} s)\n")
    print(summary(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
