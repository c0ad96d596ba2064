"""Crash recovery: a sweep killed hard (SIGKILL) mid-job, run again, ends as if it had
never stopped; a run left RUNNING is resumed only when its process is gone."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from lossopt.core.tracking import TAG_HOST, TAG_PID, is_running, process_identity

# A resume point after every epoch: the tests kill the sweeps after a few.
COMMON = ["optimizer.lr=0.05", "trainer.enable_progress_bar=false", "checkpoint_every_s=0"]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lossopt.core.cli", "train", "-m", *args, *COMMON]


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200"}


def _killed_after(
    command: list[str], cwd: Path, pattern: str, writes: int, files: int = 1
) -> list[int]:
    """Start ``command`` and SIGKILL it once ``files`` files matching ``pattern`` under
    ``cwd`` have each been written ``writes`` times (a checkpoint per epoch). Returns
    the pids of its child processes at that moment (Linux; none elsewhere)."""
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    seen: set[tuple[str, int]] = set()
    children: list[int] = []
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        for path in cwd.glob(pattern):
            with contextlib.suppress(OSError):  # replaced while looking
                seen.add((path.name, path.stat().st_mtime_ns))
        counts = [sum(name == n for n, _ in seen) for name in {n for n, _ in seen}]
        if len(counts) >= files and all(count >= writes for count in counts):
            children = _children_of(process.pid)
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the sweep ended before it could be killed"
    return children


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _children(cwd: Path) -> tuple[MlflowClient, dict[str, object]]:
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lossopt")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, {r.data.tags["lossopt.fingerprint"]: r for r in children}


def _same_record(whole: Path, resumed: Path) -> None:
    """Every job of the resumed sweep FINISHED once, with the uninterrupted sweep's
    metrics and its whole per-epoch validation history."""
    client_a, runs_a = _children(whole)
    client_b, runs_b = _children(resumed)
    assert runs_a.keys() == runs_b.keys()
    assert all(r.info.status == "FINISHED" for r in runs_b.values())
    for key, a in runs_a.items():
        b = runs_b[key]
        for metric in ("best_val/accuracy", "test/accuracy", "test/loss"):
            assert b.data.metrics[metric] == pytest.approx(a.data.metrics[metric], abs=1e-5)
        history = [
            {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/loss")}
            for client, run in ((client_a, a), (client_b, b))
        ]
        assert history[0].keys() == history[1].keys()
        for step, value in history[0].items():
            assert history[1][step] == pytest.approx(value, abs=1e-5)


@pytest.mark.slow
def test_a_job_killed_mid_training_resumes_from_its_last_epoch_in_the_same_run(tmp_path):
    command = _command("hydra/launcher=basic", "trainer.max_epochs=12")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    whole.mkdir(), resumed.mkdir()
    assert subprocess.run(command, cwd=whole, capture_output=True, env=_env()).returncode == 0

    _killed_after(command, resumed, "multirun/*/*/*/checkpoints/last.ckpt", writes=3)
    _, left = _children(resumed)
    assert [r.info.status for r in left.values()] == ["RUNNING"]  # as the dead process left it
    again = subprocess.run(command, cwd=resumed, capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr[-3000:]
    (run_id,) = [r.info.run_id for r in left.values()]
    assert f"resume job 0: run {run_id}" in again.stdout
    _same_record(whole, resumed)  # one run: the same one, continued
    assert not list(resumed.glob("multirun/*/*/*/checkpoints/last.ckpt"))


@pytest.mark.slow
def test_a_stack_killed_mid_training_resumes_from_its_last_epoch(tmp_path):
    command = _command(
        "loss=cross_entropy,focal",
        "optimizer=sgd,adamw",
        "trainer.max_epochs=30",
    )
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    whole.mkdir(), resumed.mkdir()
    assert subprocess.run(command, cwd=whole, capture_output=True, env=_env()).returncode == 0

    _killed_after(command, resumed, "multirun/*/*/.lossopt-resume/stack-*.pt", writes=4)
    again = subprocess.run(command, cwd=resumed, capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed 4 stacked jobs after epoch" in again.stdout
    _same_record(whole, resumed)
    assert not list(resumed.glob("multirun/*/*/.lossopt-resume/stack-*.pt"))


@pytest.mark.slow
def test_two_stacks_trained_at_once_die_with_the_sweep_and_both_resume(tmp_path):
    # 16 jobs on the CPU: two stacks of 8, one in the sweep's process, one in its helper.
    command = _command(
        "loss=cross_entropy,focal",
        "optimizer=sgd,adamw",
        "optimizer.weight_decay=0,0.001",
        "seed=0,1",
        "trainer.max_epochs=30",
    )
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    whole.mkdir(), resumed.mkdir()
    first = subprocess.run(command, cwd=whole, capture_output=True, text=True, env=_env())
    assert first.returncode == 0, first.stderr[-3000:]
    assert "trained 16 jobs as two stacks at once (8 and 8)" in first.stdout

    pattern = "multirun/*/*/.lossopt-resume/stack-*.pt"
    helpers = _killed_after(command, resumed, pattern, writes=4, files=2)
    if sys.platform == "linux":  # the helper ended with the sweep, not training on
        assert helpers, "the sweep had no helper process"
        deadline = time.monotonic() + 10
        while any(map(_alive, helpers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, helpers))
    again = subprocess.run(command, cwd=resumed, capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("resumed 8 stacked jobs after epoch") == 2, again.stdout
    _same_record(whole, resumed)
    assert not list(resumed.glob(pattern))


def test_this_process_is_running_and_an_ended_one_is_not():
    assert is_running(process_identity()) is True
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = {**process_identity(), TAG_PID: str(ended.pid)}
    ended.wait()
    assert is_running(identity) is False


def test_a_pid_reused_by_another_process_is_not_the_job():
    # The pid is alive (this process) but started at another time: not the job's.
    identity = {**process_identity(), "lossopt.pid_started": "1"}
    assert is_running(identity) is False


def test_a_process_on_another_host_cannot_be_seen_from_here():
    assert is_running({**process_identity(), TAG_HOST: "another-host.invalid"}) is None


def test_a_negative_checkpoint_interval_is_one_clear_error():
    from lossopt.core.composition import compose
    from lossopt.core.errors import ConfigError
    from lossopt.core.train import validate

    with pytest.raises(ConfigError, match="checkpoint_every_s: -1 is negative"):
        validate(compose(["checkpoint_every_s=-1"]))


def test_a_stack_resumes_from_its_checkpoint_ignoring_journal_records_past_it(
    tmp_path, monkeypatch
):
    """The members' histories accumulate in a journal beside the checkpoint; a save cut
    short leaves records past the checkpoint (or half a record): a resume ignores them,
    and so does every later resume."""
    import pickle

    from lossopt.core import tracking
    from lossopt.core.composition import compose
    from lossopt.core.sweep.stacked import journal_of, train_stack

    def configs(epochs: int) -> list:
        return [
            compose(["tracking=none", f"trainer.max_epochs={epochs}", f"optimizer.lr={lr}"])
            for lr in (0.01, 0.001)
        ]

    def epochs_of(outcome) -> list:  # the epochs' (name, value, step): a resumed stack
        # tests again, and each run has its own times
        return [e[:3] for e in outcome.history if e[0].startswith(("val/", "train/"))]

    folders = [tmp_path / "a", tmp_path / "b"]
    uninterrupted = train_stack(configs(3), folders)
    checkpoint = tmp_path / "stack.pt"
    train_stack(configs(2), folders, checkpoint=checkpoint)  # "killed" after epoch 1
    with journal_of(checkpoint).open("ab") as f:  # a later save's record, half of another
        pickle.dump({"histories": [[("val/loss", 999.0, 0, 0)]] * 2, "step_losses": []}, f)
        f.write(pickle.dumps({"histories": [[("val/loss", 998.0, 0, 0)]] * 2})[:20])
    monkeypatch.setattr(tracking, "is_running", lambda owner: False)  # "a dead process"
    resumed = train_stack(configs(3), folders, checkpoint=checkpoint)  # trains epoch 2
    again = train_stack(configs(3), folders, checkpoint=checkpoint)  # from the journal alone
    for whole, first, second in zip(uninterrupted, resumed, again, strict=True):
        assert len(epochs_of(whole)) > 3 * 6
        assert epochs_of(first) == epochs_of(whole)
        assert epochs_of(second) == epochs_of(whole)
