"""Many jobs of a sweep trained at once, as the K members of one stacked model.

The second of lossopt's two loops (the first is Lightning's ``Trainer``), built from
the same parts: each member's data module, model, loss and optimizer come from the
plugins through ``build``, as in ``train.run``; its loss goes through the adapter;
its metrics have the definitions of ``module.metrics_for``.

1. Each member is set up as its job would be alone: ``seed_job(seed)``, then
   data, model and loss are built in the same order, so it starts from the same
   initial weights; its training batches come from its own data module's loader
   (shuffled by a generator seeded from the job's seed), so it sees the same order.
2. The members' parameters are stacked ([K, ...] per tensor); one forward and one
   backward per step run all of them (``vmap`` over ``functional_call``). Each member's
   loss is its own loss plugin's value on its own slice (``vmap`` over the members that
   share a loss config). The sum of the losses is differentiated: each member's
   gradient is exactly its own.
3. Each member is updated by its own optimizer settings: members with identical
   optimizer and schedule settings share one optimizer whose parameters are views into
   the stacked tensors. Only optimizers that update every element from its own
   gradient and state declare ``stackable``, so sharing an optimizer changes nothing.
4. Per epoch, as Lightning's loop does: validation, best-checkpoint bookkeeping by the
   monitored metric, then the divergence check (a member whose training loss is not
   finite fails and stops updating; the others go on), then epoch schedules.
5. The test pass runs on each member's best weights.

Metrics stay on the device; they are read once per epoch. What each member records
(its MLflow run, checkpoint file, summary row) is written afterwards by the launcher,
through the same code a job run alone uses (``train.record``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import pickle
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from lossopt.core.configs import build, plugin_values
from lossopt.core.errors import LossoptError, diverged
from lossopt.core.recipe import seed_job
from lossopt.core.sweep.metrics import StackedMetrics
from lossopt.core.sweep.stack import (
    Losses,
    Member,
    Stack,
    clip_per_member,
    config_key,
    optimizers_for,
)
from lossopt.core.train import _loss_values, monitor_of

__all__ = [
    "BF16_MIXED",
    "FLOAT32",
    "MemberOutcome",
    "build_members",
    "device_of",
    "journal_of",
    "member_bytes",
    "remove_resume_point",
    "train_stack",
]

# The precisions a stack trains in: float32, or bf16 autocast over float32 weights.
FLOAT32 = ("32-true", "32")
BF16_MIXED = ("bf16-mixed",)

# One metric value as MLflow stores it: (key, value, step, timestamp in ms).
Entry = tuple[str, float, int, int]


@dataclass
class MemberOutcome:
    """Everything a member's job records, once the stack has trained."""

    data: dict[str, Any]  # the dataset's description, logged as the run's input
    started_ms: int
    history: list[Entry] = field(default_factory=list)
    objective: float = math.nan  # best value of the monitored metric
    metrics: dict[str, float] = field(default_factory=dict)  # test metrics
    best_checkpoint: str | None = None
    confusion: Tensor | None = None  # [C, C] test counts (multiclass)
    confusion_png: Future | None = None  # its picture, being drawn (the launcher's)
    error: Exception | None = None  # why the member failed (DivergedError…)
    best_epoch: int = -1
    weights: dict[str, Tensor] = field(default_factory=dict)  # the best, by parameter name
    steps_per_epoch: int = 0


def device_of(trainer: Any) -> torch.device:
    """The one device a stack trains on, from the trainer settings."""
    accelerator = str(trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def build_members(cfgs: Sequence[DictConfig]) -> tuple[list[Member | Exception], Any]:
    """Each job's own objects, built in the order ``train.run`` builds them (or the
    error that stopped it: that job fails alone), and the data they share.

    The data module is built again for each member only when building it draws from
    torch's random generator (the model's initial weights would depend on it); the
    shipped datasets do not, so they are built once.
    """
    members: list[Member | Exception] = []
    data, draws = None, True
    for cfg in cfgs:
        try:
            seed_job(cfg.seed)
            if data is None or draws:
                before = torch.random.get_rng_state()
                data = build("data", cfg.data.name, plugin_values(cfg, "data"))
                draws = not torch.equal(before, torch.random.get_rng_state())
            model = build("model", cfg.model.name, plugin_values(cfg, "model"))
            loss = build("loss", cfg.loss.name, _loss_values(cfg, data))
            # The loader's generator is seeded from torch.initial_seed(): this job's seed.
            members.append(Member(cfg, model, loss, data.train_index_loader()))
        except Exception as exc:
            members.append(exc)
    return members, data


def member_bytes(cfg: DictConfig) -> int:
    """Rough memory one member needs: its parameters with gradient, best copy and up
    to three optimizer states, and the activations of a training batch (kept for the
    backward pass, with their gradients)."""
    (member,), data = build_members([cfg])
    if isinstance(member, Exception):
        raise member
    params = sum(p.numel() for p in member.model.parameters())
    activations = 0

    def count(_module, _inputs, output) -> None:
        nonlocal activations
        if isinstance(output, Tensor):
            activations += output.numel()

    leaves = [m for m in member.model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    with torch.no_grad():
        member.model(data.splits["train"].x[:1])
    for hook in hooks:
        hook.remove()
    return 4 * (6 * params + 3 * data.batch_size * activations)


def free_bytes(device: torch.device) -> int:
    """Memory free for a stack on ``device``."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def _now_ms() -> int:
    return int(time.time() * 1000)


def journal_of(checkpoint: Path) -> Path:
    """The file beside a stack's checkpoint where its members' histories accumulate."""
    return checkpoint.with_suffix(".history")


def remove_resume_point(checkpoint: Path) -> None:
    """A stack's checkpoint and journal, once every member is recorded."""
    checkpoint.unlink(missing_ok=True)
    journal_of(checkpoint).unlink(missing_ok=True)


def train_stack(
    cfgs: Sequence[DictConfig],
    output_dirs: Sequence[Path],
    checkpoint: Path | None = None,
    checkpoint_every_s: float = 0.0,
    show_progress: bool = True,
) -> list[MemberOutcome]:
    """Train the jobs ``cfgs`` as one stack; one outcome per job, in the same order.

    The jobs must share data, model and trainer settings (the launcher groups them).
    A job whose plugins cannot be built fails alone, with its error. ``checkpoint``:
    the file where the stack's whole state is kept at the end of an epoch, at most
    every ``checkpoint_every_s`` seconds; when it exists, training resumes from it (a
    process killed mid-sweep, run again). ``show_progress``: the jobs' progress bar, when
    their trainer settings ask for one (not from a helper process).
    """
    started = _now_ms()
    # Members that share a loss, then an optimizer, sit next to each other in the stack.
    order = sorted(
        range(len(cfgs)),
        key=lambda i: (config_key(cfgs[i], "loss"), config_key(cfgs[i], "optimizer", "scheduler")),
    )
    built, data = build_members([cfgs[i] for i in order])
    outcomes: dict[int, MemberOutcome] = {}
    stacked: list[tuple[int, Member]] = []
    for i, member in zip(order, built, strict=True):
        if isinstance(member, Exception):
            description = data.describe() if data is not None else {"name": cfgs[i].data.name}
            outcomes[i] = MemberOutcome(description, started, error=member)
        else:
            stacked.append((i, member))
    if stacked:
        members = [m for _, m in stacked]
        training = _Training(members, data, started, checkpoint, checkpoint_every_s)
        trained = training.run(show_progress)
        for (i, member), outcome in zip(stacked, trained, strict=True):
            if outcome.error is None and outcome.best_epoch >= 0:
                outcome.best_checkpoint = _save_checkpoint(member, outcome, output_dirs[i])
            outcomes[i] = outcome
    return [outcomes[i] for i in range(len(cfgs))]


class _Training:
    """One stack's training: epochs of steps, validation, checkpoint bookkeeping and
    the divergence check, then the test pass on the best weights."""

    def __init__(
        self,
        members: list[Member],
        data: Any,
        started: int,
        checkpoint: Path | None = None,
        checkpoint_every_s: float = 0.0,
    ) -> None:
        cfg = members[0].cfg
        self.checkpoint, self.checkpoint_every_s = checkpoint, checkpoint_every_s
        self.journaled: tuple[list[int], int] = ([0] * len(members), 0)  # entries written
        self.saved = time.monotonic()
        self.members, self.data, self.cfg = members, data, cfg
        self.device = device_of(cfg.trainer)
        # bf16-mixed as Lightning does it: forward and loss under autocast, the
        # backward and the optimizer steps outside it, weights in float32.
        self.bf16 = str(cfg.trainer.precision) in BF16_MIXED
        self.splits = {
            s: (x.to(self.device), y.to(self.device)) for s, (x, y) in data.splits.items()
        }
        # On the CPU, each member's weight gradients as its job alone rounds them.
        exact = self.device.type == "cpu" and not self.bf16
        self.stack = Stack(members, self.device, exact=exact)
        self.losses = Losses(members, data.task)
        self.outcomes = [MemberOutcome(data.describe(), started) for _ in members]
        self.steps_per_epoch = math.ceil(len(self.splits["train"][0]) / data.batch_size)
        self.optimizers, failed = optimizers_for(members, self.stack, self.steps_per_epoch)
        k = len(members)
        self.alive = torch.ones(k, dtype=torch.bool, device=self.device)
        for index, error in failed.items():
            self._fail(index, error)
        self.monitor, self.mode = monitor_of(cfg)
        self.worst = -math.inf if self.mode == "max" else math.inf
        self.best_value = torch.full((k,), self.worst, device=self.device)
        self.best_params = {n: p.detach().clone() for n, p in self.stack.params.items()}
        self.metrics = {
            s: StackedMetrics(data.task, data.num_outputs, k, self.device)
            for s in ("train", "val", "test")
        }
        self.global_step = 0

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _fail(self, k: int, error: Exception) -> None:
        """Member k failed: it records its error and stops updating; the others go on."""
        self.outcomes[k].error = error
        self.alive[k] = False
        self.stack.freeze(k)

    def run(self, show_progress: bool = True) -> list[MemberOutcome]:
        from rich.progress import Progress

        every = int(self.cfg.trainer.log_every_n_steps)
        step_losses: list[tuple[int, Tensor, int]] = []
        epochs = int(self.cfg.trainer.max_epochs)
        shown = show_progress and bool(self.cfg.trainer.enable_progress_bar)
        first = self._resume(step_losses)
        with Progress(transient=True, disable=not shown) as progress:
            bar = progress.add_task(f"{len(self.members)} jobs stacked, epoch", total=epochs)
            progress.advance(bar, first)
            for epoch in range(first, epochs):
                self._train_epoch(every, step_losses)
                self._end_epoch(epoch)
                self._save(epoch, step_losses)
                progress.advance(bar)
                if not self.alive.any():
                    break
        for step, values, when in step_losses:
            epoch = float(step // self.steps_per_epoch)
            for k, value in enumerate(values.tolist()):
                self.outcomes[k].history += [
                    ("train/loss_step", value, step, when),
                    ("epoch", epoch, step, when),
                ]
        self._test()
        return self.outcomes

    def _save(self, epoch: int, step_losses: list) -> None:
        """Everything the next epochs depend on, written atomically: weights, optimizer
        and schedule states, best weights and values, each member's history, failures
        and shuffling generator, and the random state."""
        if self.checkpoint is None or time.monotonic() - self.saved < self.checkpoint_every_s:
            return
        from lossopt.core.tracking import process_identity

        state = {
            "epoch": epoch,
            "global_step": self.global_step,
            "owner": process_identity(),
            "params": {n: p.detach() for n, p in self.stack.params.items()},
            "best_params": self.best_params,
            "best_value": self.best_value,
            "alive": self.alive,
            # The histories are in the journal: the checkpoint says how much of it counts.
            "outcomes": [
                (o.started_ms, len(o.history), o.best_epoch, o.error) for o in self.outcomes
            ],
            "optimizers": [(o.state_dict(), s.state_dict()) for o, s, _ in self.optimizers],
            "shuffling": [m.batches.generator.get_state() for m in self.members],
            "rng": torch.get_rng_state(),
            "step_losses": len(step_losses),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        self._append_journal(step_losses)
        partial = self.checkpoint.with_suffix(".partial")
        torch.save(state, partial)
        os.replace(partial, self.checkpoint)
        self.saved = time.monotonic()

    def _resume(self, step_losses: list) -> int:
        """The first epoch to train: after the checkpoint's, when there is one."""
        if self.checkpoint is None:
            return 0
        if not self.checkpoint.exists():
            journal_of(self.checkpoint).unlink(missing_ok=True)  # an unfinished first save
            return 0
        from lossopt.core.tracking import TAG_HOST, TAG_PID, is_running

        state = torch.load(self.checkpoint, map_location=self.device, weights_only=False)
        if is_running(state["owner"]):
            raise LossoptError(
                f"these {len(self.members)} jobs are being trained by process "
                f"{state['owner'][TAG_PID]} on {state['owner'][TAG_HOST]} (checkpoint "
                f"{self.checkpoint}); re-run the sweep once that process has ended."
            )
        with torch.no_grad():
            for name, p in self.stack.params.items():
                p.copy_(state["params"][name])
        self.best_params, self.best_value = state["best_params"], state["best_value"]
        self.alive = state["alive"]
        histories, losses = self._read_journal()
        for k, (outcome, (started, count, best_epoch, error)) in enumerate(
            zip(self.outcomes, state["outcomes"], strict=True)
        ):
            outcome.started_ms, outcome.best_epoch = started, best_epoch
            # A checkpoint of lossopt 0.1 before the journal holds the lists themselves.
            outcome.history = count if isinstance(count, list) else histories[k][:count]
            if error is not None:
                self._fail(k, error)
        for (optimizer, schedule, _), (opt_state, schedule_state) in zip(
            self.optimizers, state["optimizers"], strict=True
        ):
            optimizer.load_state_dict(opt_state)
            schedule.load_state_dict(schedule_state)
        for member, shuffling in zip(self.members, state["shuffling"], strict=True):
            member.batches.generator.set_state(shuffling)
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.global_step = state["global_step"]
        kept = state["step_losses"]
        step_losses[:] = kept if isinstance(kept, list) else losses[:kept]
        self._rewrite_journal(step_losses)  # without what came after the checkpoint

        from rich.console import Console

        Console().print(
            f"resumed {len(self.members)} stacked jobs after epoch {state['epoch']} "
            f"from {self.checkpoint}"
        )
        return state["epoch"] + 1

    def _append_journal(self, step_losses: list, path: Path | None = None) -> None:
        """Append what the histories gained since the last save to the journal: the
        checkpoint would otherwise re-write every member's whole history each epoch
        (1.8 s of a 60-epoch stack of 72)."""
        counts, steps = self.journaled
        record = {
            "histories": [o.history[n:] for o, n in zip(self.outcomes, counts, strict=True)],
            "step_losses": [(s, v.cpu(), when) for s, v, when in step_losses[steps:]],
        }
        with (path or journal_of(self.checkpoint)).open("ab") as journal:
            pickle.dump(record, journal, protocol=pickle.HIGHEST_PROTOCOL)
        self.journaled = [len(o.history) for o in self.outcomes], len(step_losses)

    def _rewrite_journal(self, step_losses: list) -> None:
        """The journal as one record of the histories as they are now, replaced
        atomically (a kill leaves the old one or the new one)."""
        journal = journal_of(self.checkpoint)
        partial = journal.with_suffix(".history-partial")
        partial.unlink(missing_ok=True)
        self.journaled = [0] * len(self.outcomes), 0
        self._append_journal(step_losses, partial)
        os.replace(partial, journal)

    def _read_journal(self) -> tuple[list[list], list]:
        """Every member's history and the step losses the journal holds, in order; a
        record cut short by a kill ends it."""
        histories: list[list] = [[] for _ in self.outcomes]
        losses: list = []
        with contextlib.suppress(FileNotFoundError), journal_of(self.checkpoint).open("rb") as f:
            while True:
                try:
                    record = pickle.load(f)
                except Exception:  # noqa: BLE001 (the end, or a record a kill cut short)
                    break
                for history, new in zip(histories, record["histories"], strict=True):
                    history += new
                losses += [(s, v.to(self.device), when) for s, v, when in record["step_losses"]]
        return histories, losses

    def _train_epoch(self, every: int, step_losses: list) -> None:
        """One epoch of steps; each member's batches in its own job's order."""
        stack, batch = self.stack, self.data.batch_size
        x_all, y_all = self.splits["train"]
        orders = torch.stack([torch.cat(list(m.batches)) for m in self.members])
        orders = orders.to(self.device)
        clip = self.cfg.trainer.get("gradient_clip_val")
        stack.base.train()
        for start in range(0, orders.shape[1], batch):
            index = orders[:, start : start + batch]
            x, y = x_all[index], y_all[index]
            with self._autocast():
                values, judged = self.losses(stack(x, shared=False), y, shared=False)
            values.sum().backward()  # each member's gradient is its own
            if clip:
                clip_per_member(stack, float(clip))
            for optimizer, schedule, interval in self.optimizers:
                optimizer.step()
                if interval == "step":
                    schedule.step()
            stack.restore_frozen()
            stack.zero_grad()
            self.metrics["train"].update(judged.detach(), y, values.detach())
            if every > 0 and (self.global_step + 1) % every == 0:
                step_losses.append((self.global_step, values.detach().clone(), _now_ms()))
            self.global_step += 1

    def _evaluate(self, stage: str) -> None:
        x, y = self.splits[stage]
        batch = self.data.batch_size
        self.stack.base.eval()
        with torch.no_grad():
            for start in range(0, len(x), batch):
                xb, yb = x[start : start + batch], y[start : start + batch]
                with self._autocast():
                    values, judged = self.losses(self.stack(xb, shared=True), yb, shared=True)
                self.metrics[stage].update(judged, yb, values)

    def _record(self, stage: str, step: int, when: int) -> dict[str, Tensor]:
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        host = {name: v.tolist() for name, v in values.items()}
        for k, outcome in enumerate(self.outcomes):
            outcome.history += [(f"{stage}/{n}", host[n][k], step, when) for n in host]
        return values

    def _end_epoch(self, epoch: int) -> None:
        """As Lightning's loop: validation and the best checkpoint first, then the
        training epoch's end (the divergence check), then epoch schedules."""
        step, when = self.global_step - 1, _now_ms()
        self._evaluate("val")
        values = {
            "val": self._record("val", step, when),
            "train": self._record("train", step, when),
        }
        stage, metric = self.monitor.split("/", 1)
        current = torch.nan_to_num(values[stage][metric], nan=self.worst)
        better = current > self.best_value if self.mode == "max" else current < self.best_value
        better &= self.alive
        self.best_value = torch.where(better, current, self.best_value)
        for name, p in self.stack.params.items():
            mask = better.view(-1, *[1] * (p.dim() - 1))
            self.best_params[name] = torch.where(mask, p.detach(), self.best_params[name])
        for k in better.nonzero().flatten().tolist():
            self.outcomes[k].best_epoch = epoch
        finite = torch.isfinite(values["train"]["loss"])
        for k in (self.alive & ~finite).nonzero().flatten().tolist():
            self._fail(k, diverged(epoch))
        for outcome in self.outcomes:
            outcome.history.append(("epoch", float(epoch), step, when))
        for _, schedule, interval in self.optimizers:
            if interval == "epoch":
                schedule.step()

    def _test(self) -> None:
        """Each member's test metrics on its best weights (its last ones if it never
        improved), logged at the last step as Lightning does."""
        improved = torch.tensor([o.best_epoch >= 0 for o in self.outcomes], device=self.device)
        with torch.no_grad():
            for name, p in self.stack.params.items():
                mask = improved.view(-1, *[1] * (p.dim() - 1))
                p.copy_(torch.where(mask, self.best_params[name], p))
        self._evaluate("test")
        tested = {n: v.tolist() for n, v in self.metrics["test"].compute().items()}
        confusion = self.metrics["test"].confusion() if self.data.task == "multiclass" else None
        best = self.best_value.tolist()
        ended = _now_ms()
        for k, outcome in enumerate(self.outcomes):
            if outcome.error is not None:  # a failed job is not tested
                continue
            outcome.metrics = {f"test/{n}": tested[n][k] for n in tested}
            # Lightning logs the epoch of the restored best checkpoint with the test.
            tested_at = [*outcome.metrics.items(), ("epoch", float(outcome.best_epoch))]
            outcome.history += [(key, v, self.global_step, ended) for key, v in tested_at]
            outcome.objective = best[k] if outcome.best_epoch >= 0 else math.nan
            outcome.confusion = confusion[k].cpu() if confusion is not None else None
            outcome.weights = {n: t[k].detach().cpu() for n, t in self.best_params.items()}
            outcome.steps_per_epoch = self.steps_per_epoch


def _save_checkpoint(member: Member, outcome: MemberOutcome, output_dir: Path) -> str:
    """The member's best weights in the file a job alone would write: Lightning's
    checkpoint layout (``state_dict`` of the training module: ``model.*``, ``loss.*``)."""
    state = {f"model.{n}": t.clone() for n, t in outcome.weights.items()}
    state.update(member.loss.state_dict(prefix="loss."))
    epoch = outcome.best_epoch
    global_step = (epoch + 1) * outcome.steps_per_epoch
    folder = Path(output_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch={epoch}-step={global_step}.ckpt"
    checkpoint = {
        "epoch": epoch,
        "global_step": global_step,
        "pytorch-lightning_version": importlib.metadata.version("lightning"),
        "state_dict": state,
    }
    torch.save(checkpoint, path)
    return str(path)
