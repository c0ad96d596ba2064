"""The vectorized launcher: the jobs of a sweep that can share one stacked model are
trained at once; the others run one after another, as with Hydra's basic launcher.

Hydra hands a launcher a batch of jobs (their overrides). For each job this composes
its config, as the basic launcher does, and asks ``stack_key``: jobs with the same key
(same data, model and trainer settings; loss, optimizer, schedule and seed may differ)
form a group, trained by ``stacked`` in chunks that fit the device's memory (on
the CPU, a chunk of 16 jobs or more as two stacks at once, in two processes). Each
member is then recorded as a job through Hydra's ``run_job`` (its folder, ``.hydra``
files, callbacks, return value) with ``job.member_task``: the same sweep-job code that
a job run alone goes through. Jobs that cannot stack — a plugin that does not declare
``stackable``, trainer settings the stacked loop does not implement, a group of one —
and jobs already FINISHED run through the normal task function.

Hydra finds launchers only in the ``hydra_plugins`` namespace: the class Hydra
instantiates is ``hydra_plugins.lossopt_launcher.VectorizedLauncher``, which hands
its calls to ``StackingLauncher`` here.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from lossopt.core._kill_points import kill_point
from lossopt.core.errors import LossoptError, print_error

__all__ = ["STACKED_TRAINER_KEYS", "StackingLauncher", "stack_key"]

console = Console()

# The trainer settings the stacked loop implements; any other key set (not false or
# null) runs the job alone: trainer.deterministic, trainer.limit_train_batches…
STACKED_TRAINER_KEYS = frozenset(
    {
        "accelerator",
        "devices",
        "strategy",
        "precision",
        "max_epochs",
        "log_every_n_steps",
        "enable_progress_bar",
        "enable_model_summary",
        "gradient_clip_val",
    }
)
# What may differ between the members of one stack.
_PER_MEMBER = ("loss", "optimizer", "scheduler", "seed")


def stack_key(cfg: DictConfig) -> tuple[str | None, str]:
    """``(key, "")`` when the job may train in a stack with the jobs of the same key;
    ``(None, why)`` when it must run alone."""
    from lossopt.core.registry import registry
    from lossopt.core.sweep.metrics import StackedMetrics
    from lossopt.core.train import monitor_of, validate

    try:
        validate(cfg)
    except LossoptError:
        return None, "its config is refused (the job reports why)"
    for kind in ("data", "model", "loss", "optimizer"):
        spec = registry(kind).spec(cfg[kind].name)
        if not getattr(spec, "stackable", False):
            return None, f"{kind}={cfg[kind].name} {_why_alone(spec)}"
    trainer = cfg.trainer
    unsupported = sorted(k for k, v in trainer.items() if k not in STACKED_TRAINER_KEYS and v)
    if unsupported:
        return None, f"trainer.{unsupported[0]} is not implemented by stacked training"
    if str(trainer.devices) != "1" or str(trainer.strategy) != "auto":
        return None, "it asks for several devices"
    from lossopt.core.sweep.stacked import BF16_MIXED, FLOAT32

    if str(trainer.precision) not in (*FLOAT32, *BF16_MIXED):
        return None, f"trainer.precision={trainer.precision} is not implemented by stacked training"
    if str(trainer.accelerator) not in ("cpu", "gpu", "cuda", "auto"):
        return None, f"trainer.accelerator={trainer.accelerator}"
    stage, _, metric = monitor_of(cfg)[0].partition("/")
    if stage not in ("train", "val") or metric not in StackedMetrics.names(cfg.data.task):
        return None, f"monitor={cfg.monitor} is not a stacked metric"
    from lossopt.core.tracking import computed_values

    shared = {k: v for k, v in computed_values(cfg).items() if k.split(".")[0] not in _PER_MEMBER}
    return json.dumps(shared, sort_keys=True, default=str), ""


def _why_alone(spec: Any) -> str:
    """What keeps a plugin out of stacks, from its capability flags."""
    if getattr(spec, "needs_closure", False):
        return "re-evaluates the loss in its step (closure)"
    if getattr(spec, "matrix_params_only", False) or getattr(spec, "sparse_gradients", False):
        return "sees whole tensors in its step"
    return "is not declared stackable"


@dataclass
class _Job:
    index: int
    config: DictConfig  # the composed sweep config, ``hydra`` node included
    task: DictConfig  # what the job's task function gets: the config without ``hydra``
    output_dir: Path
    resume: Any = None  # its run, left unfinished by a dead process (``job.sweep_state``)


def _describe(groups: list[list[_Job]], alone: list[tuple[_Job, str]], skipped: int) -> str:
    """``72 jobs: 1 stacked group of 72`` and what runs alone, and why."""
    total = sum(map(len, groups)) + len(alone) + skipped
    parts = []
    if groups:
        sizes = ", ".join(str(len(g)) for g in groups)
        noun = "group" if len(groups) == 1 else "groups"
        parts.append(f"{len(groups)} stacked {noun} of {sizes}")
    if alone:
        reasons: dict[str, int] = {}
        for _, why in alone:
            reasons[why] = reasons.get(why, 0) + 1
        text = "; ".join(f"{n}: {why}" if n > 1 else why for why, n in reasons.items())
        parts.append(f"{len(alone)} alone ({text})")
    if skipped:
        parts.append(f"{skipped} finished earlier (skipped)")
    return f"{total} jobs: " + ", ".join(parts)


def _chunks(jobs: list[_Job], size: int) -> list[list[_Job]]:
    """Split ``jobs`` into near-equal chunks of at most ``size``."""
    count = math.ceil(len(jobs) / max(1, size))
    step = math.ceil(len(jobs) / count)
    return [jobs[i : i + step] for i in range(0, len(jobs), step)]


class StackingLauncher:
    """The launcher's work; see the module docstring.

    max_members: the most members one stack holds; None derives it from the free
    memory of the device and the size of one member.
    cpu_threads: torch's intra-op threads while a stack trains on the CPU; None takes
    half the cores (at least one). A stacked step is hundreds of small operations, and
    threads that meet at the end of each one stall whenever another process holds a
    core: on 2 cores, 72 stacked jobs x 5 epochs took 1.35 s with 2 threads and 1.7 s
    with 1 on an idle machine, but 5 to 85 s with 2 threads beside one busy process.
    parallel_stacks: on the CPU, a group of at least 16 jobs trains as two stacks at
    once, one in this process and one in the helper process, each on ``cpu_threads``
    threads, when the cores allow both. A stack's step costs nearly in proportion to
    its members (the study: 36 members train in 1.95 s, 72 in 3.8 s), so two halves
    side by side take about half the time: the other half of the cores.

    The helper process starts with the sweep (its imports overlap the composition of
    the jobs) and serves all its batches (an Optuna search's too); it trains half stacks
    and draws the members' confusion matrices. It ends with the sweep's process.
    """

    def __init__(
        self,
        max_members: int | None = None,
        cpu_threads: int | None = None,
        parallel_stacks: bool = True,
    ) -> None:
        for key, value in (("max_members", max_members), ("cpu_threads", cpu_threads)):
            if value is not None and value < 1:
                raise LossoptError(
                    f"hydra.launcher.{key}={value}: give a positive number, or null for "
                    "the default (see 'lossopt train -m --cfg hydra' and the README)."
                )
        self.max_members = max_members
        self.cpu_threads = cpu_threads or max(1, (os.cpu_count() or 2) // 2)
        self.parallel_stacks = parallel_stacks
        self.helper: ProcessPoolExecutor | None = None
        self.config: DictConfig | None = None
        self.hydra_context: Any = None
        self.task_function: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        _compose_once(hydra_context.config_loader)
        self._start_helper()  # now: its start-up overlaps the sweeper's composition

    def _start_helper(self) -> None:
        if self.helper is not None:
            return
        assert self.config is not None
        self.helper = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_end_with_parent
        )
        task = copy.deepcopy(self.config)
        with open_dict(task):
            del task["hydra"]
        trains = self._helper_trains(task)
        self.helper.submit(_warm_up, task, self.cpu_threads if trains else 0)

    def _stop_helper(self) -> None:
        if self.helper is not None:
            self.helper.shutdown(wait=True, cancel_futures=True)
            self.helper = None

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
        from hydra.core.utils import configure_log, setup_globals

        setup_globals()
        assert self.config is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs = [self._compose(initial_job_idx + i, o) for i, o in enumerate(job_overrides)]
        groups, alone, skipped = self._plan(jobs)
        console.print(_describe(groups, alone, len(skipped)))
        returns: dict[int, Any] = {}
        self.hydra_context.config_loader.composed.clear()
        try:
            for group in groups:
                self._start_helper()  # kept from the batch before, warm, if any
                for chunk in self._split(group):
                    self._train(chunk, returns)
        except BaseException:
            self._stop_helper()
            raise
        for job in [*skipped, *(job for job, _ in alone)]:
            returns[job.index] = self._run(job, self.task_function)
        return [returns[job.index] for job in jobs]

    def _compose(self, index: int, overrides: Sequence[str]) -> _Job:
        from hydra.core.hydra_config import HydraConfig

        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = index
            config.hydra.job.num = index
        # Where Hydra's run_job will put the job: the stack writes checkpoints there.
        HydraConfig.instance().set_config(config)
        folder = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        folder /= str(OmegaConf.select(config, "hydra.sweep.subdir"))
        task = copy.deepcopy(config)
        with open_dict(task):
            del task["hydra"]
        return _Job(index, config, task, folder.resolve())

    def _plan(self, jobs: list[_Job]) -> tuple[list[list[_Job]], list[tuple[_Job, str]], list]:
        """(stacked groups, jobs alone with why, jobs already FINISHED)."""
        finished, unfinished = _sweep_state(jobs[0].task) if jobs else (set(), {})
        from lossopt.core.tracking import fingerprint

        by_key: dict[str, list[_Job]] = {}
        alone: list[tuple[_Job, str]] = []
        skipped = []
        for job in jobs:
            key = fingerprint(job.task) if finished or unfinished else None
            if key in finished:
                skipped.append(job)
                continue
            job.resume = unfinished.get(key)
            key, why = stack_key(job.task)
            if key is None:
                alone.append((job, why))
            else:
                by_key.setdefault(key, []).append(job)
        groups = []
        for group in by_key.values():
            if len(group) == 1:
                alone.append((group[0], "no other job to stack with"))
            else:
                groups.append(group)
        return groups, alone, skipped

    def _split(self, group: list[_Job]) -> list[list[_Job]]:
        from lossopt.core.sweep.stacked import device_of, free_bytes, member_bytes

        size = self.max_members
        if size is None:
            task = group[0].task
            need = member_bytes(task)
            size = max(1, int(0.5 * free_bytes(device_of(task.trainer)) // need))
        chunks = _chunks(group, size)
        if len(chunks) > 1:
            console.print(
                f"stacked group of {len(group)} in {len(chunks)} chunks of at most "
                f"{max(map(len, chunks))} members (hydra.launcher.max_members={size})"
            )
        return chunks

    def _train(self, chunk: list[_Job], returns: dict[int, Any]) -> None:
        import torch

        from lossopt.core.sweep.job import member_task
        from lossopt.core.sweep.stacked import remove_resume_point, train_stack

        assert self.helper is not None
        start = time.perf_counter()
        parts = self._halves(chunk)
        elsewhere = None
        if len(parts) == 2:
            elsewhere = self.helper.submit(_train_in_helper, _stack_of(parts[0]), self.cpu_threads)
        # While this process trains: the drawing's imports, for the records afterwards.
        self.helper.submit(_draw_confusion)

        def here() -> list:
            threads = torch.get_num_threads()
            if self._on_cpu(parts[-1]):
                torch.set_num_threads(self.cpu_threads)
            try:
                return train_stack(*_stack_of(parts[-1]))
            finally:
                torch.set_num_threads(threads)

        trained = [(parts[-1], self._outcomes(parts[-1], returns, here))]
        if elsewhere is not None:
            trained.insert(0, (parts[0], self._outcomes(parts[0], returns, elsewhere.result)))
        trained = [(part, outcomes) for part, outcomes in trained if outcomes is not None]
        if not trained:
            return
        kill_point("stack-trained")
        sizes = " and ".join(str(len(part)) for part, _ in trained)
        stacks = "one stack" if len(trained) == 1 else f"two stacks at once ({sizes})"
        count = sum(len(part) for part, _ in trained)
        console.print(f"trained {count} jobs as {stacks} in {time.perf_counter() - start:.1f} s")
        # Drawing a confusion matrix takes as long as the rest of a member's record
        # (~45 ms): the helper draws them while this process records the members.
        members = [
            (job, o) for part, outcomes in trained for job, o in zip(part, outcomes, strict=True)
        ]
        for job, outcome in members:
            if outcome.confusion is not None and outcome.error is None:
                png = job.output_dir / "confusion_matrix.png"
                job.output_dir.mkdir(parents=True, exist_ok=True)
                outcome.confusion_png = self.helper.submit(
                    _draw_confusion, outcome.confusion.numpy(), png
                )
        for job, outcome in members:
            returns[job.index] = self._record(job, member_task(outcome, job.resume))
        for part, _ in trained:  # every member is recorded: nothing left to resume
            if (checkpoint := _stack_checkpoint(part)) is not None:
                remove_resume_point(checkpoint)

    def _on_cpu(self, jobs: list[_Job]) -> bool:
        from lossopt.core.sweep.stacked import device_of

        return device_of(jobs[0].task.trainer).type == "cpu"

    def _helper_trains(self, task: DictConfig) -> bool:
        """Whether stacks of jobs with ``task``'s trainer settings may train two at
        once, one in the helper (see ``parallel_stacks``)."""
        from lossopt.core.sweep.stacked import device_of

        cores = os.cpu_count() or 1
        return (
            self.parallel_stacks
            and cores >= 2 * self.cpu_threads
            and device_of(task.trainer).type == "cpu"
        )

    def _halves(self, chunk: list[_Job]) -> list[list[_Job]]:
        """The chunk as the two stacks trained at once (see ``parallel_stacks``), or
        as itself."""
        if len(chunk) < 2 * _HALF_STACK or not self._helper_trains(chunk[0].task):
            return [chunk]
        middle = round(len(chunk) * _HELPER_SHARE)
        return [chunk[:middle], chunk[middle:]]

    def _outcomes(self, jobs: list[_Job], returns: dict[int, Any], train: Any) -> list | None:
        """The outcomes ``train()`` gives for ``jobs``' stack; None when it could not
        train, its jobs then recorded (failed, or run one by one)."""
        from lossopt.core.sweep.job import member_task
        from lossopt.core.sweep.stacked import MemberOutcome

        try:
            return train()
        except LossoptError as exc:  # e.g. another process is training these jobs
            for job in jobs:
                failed = MemberOutcome({"name": job.task.data.name}, _now_ms(), error=exc)
                returns[job.index] = self._run(job, member_task(failed, job.resume))
        except Exception as exc:  # the stack failed as a whole: its jobs run alone
            print_error(
                f"{type(exc).__name__}: {exc}",
                f"stacked training of {len(jobs)} jobs failed; they run one by one",
            )
            for job in jobs:
                returns[job.index] = self._run(job, self.task_function)
        return None

    def _record(self, job: _Job, task_function: Any) -> Any:
        """Hydra's ``run_job`` for a trained member, less what its 72nd call in a row
        need not repeat (~10 ms a member: a third of Hydra's share of its record): the
        config is handed to ``HydraConfig`` once, with its output folder already set,
        not twice; the task's config is the one ``_compose`` copied (the one the stack
        trained), and the hydra node ``HydraConfig`` copied is not copied again. The
        rest is ``run_job``'s, in its order and with its functions: the same ``.hydra``
        files, logging, working directory, environment, callbacks and ``JobReturn`` (a
        test compares both)."""
        from hydra import version
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import (
            JobReturn,
            JobRuntime,
            JobStatus,
            _flush_loggers,
            _save_config,
            configure_log,
            env_override,
        )
        from omegaconf import read_write

        assert self.config is not None
        config, callbacks = job.config, self.hydra_context.callbacks
        old_cwd, old_hydra_cfg = os.getcwd(), HydraConfig.instance().cfg
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = str(job.output_dir)
        HydraConfig.instance().set_config(config)
        chdir = False
        try:
            ret = JobReturn()
            ret.cfg = task_cfg = job.task
            ret.hydra_cfg = hydra_cfg = HydraConfig.instance().cfg
            ret.overrides = OmegaConf.to_container(config.hydra.overrides.task)
            job.output_dir.mkdir(parents=True, exist_ok=True)
            chdir = hydra_cfg.hydra.job.chdir
            if chdir is None:
                chdir = not version.base_at_least("1.2")
            if chdir:
                os.chdir(job.output_dir)
            ret.working_dir = str(job.output_dir) if chdir else os.getcwd()
            configure_log(config.hydra.job_logging, config.hydra.verbose)
            if config.hydra.output_subdir is not None:
                hydra_output = job.output_dir / str(config.hydra.output_subdir)
                _save_config(task_cfg, "config.yaml", hydra_output)
                _save_config(hydra_cfg, "hydra.yaml", hydra_output)
                _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
            with env_override(hydra_cfg.hydra.job.env_set):
                callbacks.on_job_start(config=config, task_function=task_function)
                try:
                    ret.return_value = task_function(task_cfg)
                    ret.status = JobStatus.COMPLETED
                except Exception as exc:
                    ret.return_value = exc
                    ret.status = JobStatus.FAILED
            ret.task_name = JobRuntime.instance().get("name")
            _flush_loggers()
            callbacks.on_job_end(config=config, job_return=ret)
        finally:
            HydraConfig.instance().cfg = old_hydra_cfg
            if chdir:
                os.chdir(old_cwd)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def _run(self, job: _Job, task_function: Any) -> Any:
        from hydra.core.utils import configure_log, run_job

        assert self.config is not None
        result = run_job(
            hydra_context=self.hydra_context,
            task_function=task_function,
            config=job.config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return result


def _stack_checkpoint(chunk: list[_Job]) -> Path | None:
    """Where a stack keeps its state between epochs: in the sweep's resume folder
    (the same for every run of the sweep's command), named after its jobs."""
    from lossopt.core.job_context import resume_dir
    from lossopt.core.tracking import fingerprint

    folder = resume_dir()
    if folder is None:
        return None
    jobs = sorted(fingerprint(job.task) for job in chunk)
    return folder / f"stack-{hashlib.sha256(' '.join(jobs).encode()).hexdigest()[:16]}.pt"


def _now_ms() -> int:
    return int(time.time() * 1000)


_HALF_STACK = 8  # the fewest members of each of two stacks trained at once
# The helper's share of the members. Before its first stack, the launcher's process
# imports torch._dynamo (building any torch optimizer does; 0.7 s, as long as a few of
# the study's members take to train), which the helper imported while it started. A
# fixed share, not one that depends on what was imported: a re-run splits a group as
# the interrupted run did, and finds both stacks' resume points.
_HELPER_SHARE = 0.53


def _stack_of(jobs: list[_Job]) -> tuple:
    """``train_stack``'s arguments for ``jobs``."""
    tasks, folders = [j.task for j in jobs], [j.output_dir for j in jobs]
    return tasks, folders, _stack_checkpoint(jobs), float(jobs[0].task.checkpoint_every_s)


# --- in the helper process (started fresh, ``spawn``: no copy of this process's threads
# or CUDA state) ---------------------------------------------------------------------


def _end_with_parent() -> None:
    """The helper ends with the launcher's process, even one killed with SIGKILL: an
    orphan would go on training and hold its stack's lock against a re-run. And it
    ends quickly: once its exit handlers have run, without tearing down torch's modules
    one by one (1 s; see ``cli.entry``)."""
    import atexit

    from lossopt.core._startup_heap import start_up

    atexit.register(os._exit, 0)  # registered first, so it runs last
    start_up()  # until _warm_up has imported what training needs
    if sys.platform == "linux":
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _warm_up(task: DictConfig, threads: int) -> None:
    """What training a stack imports and loads, while the launcher's process composes
    the jobs: torch, the plugins and data of the sweep's base config, and
    ``torch._dynamo``, which building any torch optimizer imports (0.7 s). ``threads``
    0: the helper will only draw (stacks on a GPU), and loads nothing yet."""
    from lossopt.core._startup_heap import settle

    if not threads:
        settle()
        return
    import torch

    from lossopt.core.sweep.stacked import build_members

    torch.set_num_threads(threads)
    with contextlib.suppress(Exception):  # the jobs' own configs may differ: a head start
        build_members([task])
    import torch._dynamo  # noqa: F401

    settle()


def _train_in_helper(stack: tuple, threads: int) -> list:
    """``train_stack`` of half a group; the best weights stay in the members'
    checkpoint files."""
    import torch

    from lossopt.core.sweep.stacked import train_stack

    torch.set_num_threads(threads)
    outcomes = train_stack(*stack, show_progress=False)
    for outcome in outcomes:
        outcome.weights = {}
    return outcomes


def _draw_confusion(*matrix_and_path: Any) -> str | None:
    """``plots.save_confusion(matrix, path)``; without arguments, only its imports.
    Matplotlib is imported in the helper, never in the launcher's process."""
    from lossopt.core.plots import save_confusion

    return save_confusion(*matrix_and_path) if matrix_and_path else None


def _compose_once(loader: Any) -> None:
    """Compose each job's config once, and most of them without Hydra's composition.

    Hydra's sweeper composes every job's config to check the batch, and the launcher
    composes it again (~60 ms a job: 4.5 s of a 72-job sweep, a fifth of it). Two
    savings, both inside Hydra's ``load_sweep_config``:
    - the launcher takes the config the check composed (handed out once more at most);
    - jobs that differ from an already composed job only in plain values
      (``optimizer.lr=0.1``, ``seed=1``: not a config group, not ``+``/``~``/``hydra.``)
      are that job's config with those values set the way Hydra sets them
      (``OmegaConf.update``), and ``hydra.overrides.task`` and
      ``hydra.job.override_dirname`` rebuilt. A sweep of 4 losses × 3 optimizers × 3
      lr × 2 seeds composes 12 configs instead of 72. Anything else, or any error, goes
      through Hydra's own composition (which then reports the error).
    """
    if hasattr(loader, "composed"):
        return
    compose = loader.load_sweep_config
    loader.composed = {}
    templates: dict[tuple[str, ...], DictConfig] = {}
    groups: set[str] = set()  # the config groups seen in composed configs' choices

    def load_sweep_config(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = tuple(sweep_overrides)
        if key in loader.composed:
            return loader.composed.pop(key)
        plan = _plan_values(sweep_overrides, groups)
        config = None
        if plan is not None and plan.structure in templates:
            config = _with_values(templates[plan.structure], plan, master_config)
        if config is None:
            config = compose(master_config, sweep_overrides)
            groups.update(config.hydra.runtime.choices.keys())
            plan = _plan_values(sweep_overrides, groups)
            if (
                plan is not None
                and plan.structure not in templates
                and all(_is_value(config, o.key_or_group) for o in plan.values)
            ):  # a copy: the launcher and Hydra's run_job change the config handed out
                templates[plan.structure] = copy.deepcopy(config)
        loader.composed[key] = config
        return config

    loader.load_sweep_config = load_sweep_config


@dataclass
class _ValuePlan:
    structure: tuple[str, ...]  # each override, a plain value's as its key alone
    parsed: list  # every override, parsed
    values: list  # the plain value overrides


def _plan_values(overrides: list[str], groups: set[str]) -> _ValuePlan | None:
    """Which overrides are plain values; None when one is a hydra override or does
    not parse (Hydra's composition then reports it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001
        return None
    structure, values = [], []
    for override in parsed:
        if override.is_hydra_override():
            return None
        plain = (
            override.type == OverrideType.CHANGE
            and override.package is None
            and not override.is_sweep_override()
            and override.key_or_group not in groups
            and isinstance(override.value(), str | int | float | bool | None)
        )
        structure.append(f"{override.key_or_group}=" if plain else override.input_line)
        if plain:
            values.append(override)
    return _ValuePlan(tuple(structure), parsed, values)


def _is_value(config: DictConfig, key: str) -> bool:
    """Whether ``key`` names a plain value of ``config``: set, and not a node."""
    node = OmegaConf.select(config, key, default=None, throw_on_missing=False)
    return key not in config.hydra.runtime.choices and not OmegaConf.is_config(node)


def _with_values(template: DictConfig, plan: _ValuePlan, master: DictConfig) -> DictConfig | None:
    """``template`` with this job's plain values set as Hydra sets them, and the
    fields Hydra derives from the overrides rebuilt; None on any error."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    config = copy.deepcopy(template)
    try:
        for override in plan.values:
            OmegaConf.update(config, override.key_or_group, override.value(), merge=True)
        job = config.hydra.job
        config.hydra.overrides.task = [o.input_line for o in plan.parsed]
        job.override_dirname = get_overrides_dirname(
            overrides=plan.parsed,
            kv_sep=job.config.override_dirname.kv_sep,
            item_sep=job.config.override_dirname.item_sep,
            exclude_keys=job.config.override_dirname.exclude_keys,
        )
    except Exception:  # noqa: BLE001 (Hydra's own composition reports it)
        return None
    OmegaConf.copy_cache(from_config=master, to_config=config)
    return config


def _sweep_state(config: DictConfig) -> tuple[set[str], dict[str, Any]]:
    """This sweep's FINISHED jobs and unfinished runs, by fingerprint (one query for
    the whole batch: ``job.sweep_state``)."""
    from lossopt.core.job_context import PARENT_ENV
    from lossopt.core.sweep.job import sweep_state

    parent = os.environ.get(PARENT_ENV)
    if not parent or not config.tracking.enabled:
        return set(), {}
    return sweep_state(config, parent)
