"""The vectorized launcher: which jobs share a stack, what the terminal says about it,
and, end to end, that a stacked member is recorded exactly as a job of the basic
launcher is."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from lossopt.core.composition import (
    CONFIG_DIR,
    CONFIG_NAME,
    VERSION_BASE,
    compose,
    register_hydra_plugins,
)
from lossopt.core.configs import store_configs
from lossopt.core.errors import LossoptError
from lossopt.core.sweep.launcher import StackingLauncher, _chunks, _describe, stack_key

QUIET = ["tracking=none", "trainer.enable_progress_bar=false"]


def _key(*overrides: str) -> tuple[str | None, str]:
    return stack_key(compose([*QUIET, *overrides]))


def test_loss_optimizer_schedule_and_seed_may_differ_within_a_stack():
    first, _ = _key("loss=cross_entropy", "optimizer=sgd", "seed=0")
    others = [
        _key("loss=focal", "optimizer=adamw", "optimizer.lr=0.3", "seed=1"),
        _key(
            "loss=mse", "optimizer=rmsprop", "scheduler=cosine", "trainer.enable_progress_bar=true"
        ),
    ]
    assert first is not None
    assert all(key == first for key, _ in others)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["optimizer=lbfgs"], "optimizer=lbfgs re-evaluates the loss"),
        (["optimizer=muon", "model.bias=false"], "optimizer=muon sees whole tensors"),
        (["optimizer=adafactor"], "optimizer=adafactor is not declared stackable"),
        (["model=resnet18"], "model=resnet18 is not declared stackable"),
        (["loss=adaptive_log_softmax"], "loss=adaptive_log_softmax is not declared stackable"),
        (["trainer.devices=2", "trainer.strategy=ddp"], "several devices"),
        (["trainer.precision=16-mixed"], "trainer.precision=16-mixed is not implemented"),
        (["+trainer.limit_train_batches=5"], "trainer.limit_train_batches is not implemented"),
        (["trainer.deterministic=true"], "trainer.deterministic is not implemented"),
        (["loss=focal", "data=diabetes"], "refused"),
    ],
)
def test_jobs_that_cannot_stack_run_alone_and_say_why(overrides, reason):
    key, why = _key(*overrides)
    assert key is None
    assert reason in why


def test_other_data_model_or_trainer_settings_make_another_stack():
    base, _ = _key()
    for overrides in (
        ["data.batch_size=32"],
        ["model.hidden=[64]"],
        ["trainer.max_epochs=3"],
        ["trainer.precision=bf16-mixed"],
    ):
        key, _ = _key(*overrides)
        assert key is not None and key != base, overrides


def test_a_third_party_optimizer_stacks_when_its_spec_says_so(fake_dist):
    module = textwrap.dedent(
        """
        import torch
        from lossopt.core.specs import OptimizerSpec

        class Sign(torch.optim.SGD):
            pass

        sign = OptimizerSpec(Sign, stackable=True)
        plain = Sign
        """
    )
    fake_dist(
        "lossopt-sign",
        {"lossopt.optimizers": {"sign": "sign_opt:sign", "plainsign": "sign_opt:plain"}},
        {"sign_opt": module},
    )
    assert _key("optimizer=sign", "optimizer.lr=0.1")[0] == _key()[0]
    assert "not declared stackable" in _key("optimizer=plainsign", "optimizer.lr=0.1")[1]


def test_the_terminal_says_how_jobs_were_grouped():
    jobs = list(range(10))
    text = _describe([jobs[:6], jobs[6:8]], [(8, "optimizer=lbfgs re-evaluates")], 1)
    assert text == (
        "10 jobs: 2 stacked groups of 6, 2, 1 alone (optimizer=lbfgs re-evaluates), "
        "1 finished earlier (skipped)"
    )


def test_groups_are_split_into_near_equal_chunks():
    assert [len(c) for c in _chunks(list(range(10)), 4)] == [4, 4, 2]
    assert [len(c) for c in _chunks(list(range(72)), 1000)] == [72]
    assert [len(c) for c in _chunks(list(range(5)), 1)] == [1] * 5


def test_launcher_settings_must_be_positive():
    with pytest.raises(LossoptError, match="max_members=0"):
        StackingLauncher(max_members=0)
    with pytest.raises(LossoptError, match="cpu_threads=-1"):
        StackingLauncher(cpu_threads=-1)
    assert StackingLauncher().cpu_threads >= 1


# --- end to end ---------------------------------------------------------------------

SHORT = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false"]
CALLBACK = """
from pathlib import Path
from hydra.experimental.callback import Callback

class Probe(Callback):
    def on_job_start(self, config, **kwargs):
        Path("events.txt").open("a").write(f"start {config.hydra.job.num}\\n")

    def on_job_end(self, config, job_return, **kwargs):
        Path("events.txt").open("a").write(f"end {config.hydra.job.num} {job_return.status}\\n")
"""


def _lossopt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(cwd)}
    command = [sys.executable, "-m", "lossopt.core.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def _children(cwd: Path, experiment: str) -> dict[tuple, object]:
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    params = ("loss.name", "optimizer.name", "seed")
    return {tuple(r.data.params[p] for p in params): r for r in children}


@pytest.mark.slow
def test_a_stacked_member_is_recorded_like_a_job_of_the_basic_launcher(tmp_path):
    (tmp_path / "probe_callback.py").write_text(CALLBACK)
    sweep = [
        "loss=cross_entropy,nll",
        "seed=0,1",
        *SHORT,
        "+hydra.callbacks.probe._target_=probe_callback.Probe",
    ]
    basic = _lossopt(
        "train", "-m", *sweep, "hydra/launcher=basic", "tracking.experiment=basic", cwd=tmp_path
    )
    assert basic.returncode == 0, basic.stderr[-3000:]
    (tmp_path / "events.txt").rename(tmp_path / "basic-events.txt")
    stacked = _lossopt("train", "-m", *sweep, "tracking.experiment=stacked", cwd=tmp_path)
    assert stacked.returncode == 0, stacked.stderr[-3000:]
    assert "4 jobs: 1 stacked group of 4" in stacked.stdout

    # Hydra's callbacks see every member as a job, started and ended.
    events = sorted((tmp_path / "events.txt").read_text().splitlines())
    assert events == sorted((tmp_path / "basic-events.txt").read_text().splitlines())
    assert len(events) == 8 and all("COMPLETED" in e for e in events if e.startswith("end"))

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    alone, members = _children(tmp_path, "basic"), _children(tmp_path, "stacked")
    assert set(alone) == set(members) and len(members) == 4
    for key, job in alone.items():
        member = members[key]
        assert member.info.status == job.info.status == "FINISHED"
        assert member.info.run_name == job.info.run_name
        assert member.data.params == job.data.params
        assert set(member.data.tags) == set(job.data.tags)
        assert member.data.tags["lossopt.fingerprint"] == job.data.tags["lossopt.fingerprint"]
        assert set(member.data.metrics) == set(job.data.metrics)
        for metric in member.data.metrics:
            steps = [m.step for m in client.get_metric_history(job.info.run_id, metric)]
            got = [m.step for m in client.get_metric_history(member.info.run_id, metric)]
            assert sorted(set(got)) == sorted(set(steps)), metric
        assert member.data.metrics["val/loss"] == pytest.approx(
            job.data.metrics["val/loss"], rel=2e-3
        )
        artifacts = {a.path for a in client.list_artifacts(member.info.run_id)}
        assert artifacts == {a.path for a in client.list_artifacts(job.info.run_id)}
        (dataset,) = member.inputs.dataset_inputs
        assert dataset.dataset.digest == job.inputs.dataset_inputs[0].dataset.digest

    # Each member has its job folder, with Hydra's files and its best checkpoint.
    (sweep_dir,) = [
        d
        for d in (tmp_path / "multirun").glob("*/*")
        if "tracking.experiment=stacked" in (d / "multirun.yaml").read_text()
    ]
    for job in range(4):
        folder = sweep_dir / str(job)
        assert {p.name for p in (folder / ".hydra").iterdir()} == {
            "config.yaml",
            "hydra.yaml",
            "overrides.yaml",
        }
        (checkpoint,) = (folder / "checkpoints").glob("epoch=*-step=*.ckpt")
        assert torch.load(checkpoint, weights_only=True)["state_dict"]


@pytest.mark.slow
def test_a_sweep_mixing_lbfgs_and_adam_stacks_adam_and_finishes_all(tmp_path):
    result = _lossopt("train", "-m", "optimizer=lbfgs,adam", "seed=0,1", *SHORT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 jobs: 1 stacked group of 2, 2 alone (2: optimizer=lbfgs re-evaluates" in result.stdout
    children = _children(tmp_path, "lossopt")
    assert sorted(r.info.status for r in children.values()) == ["FINISHED"] * 4


# What a fully stacked sweep's process imports; Lightning, torchmetrics and torchvision
# (with torch._dynamo) are 1.2 s of start-up, and matplotlib draws in a worker process.
IMPORTS = """
import sys
from lossopt.core.cli import main
code = main(sys.argv[1:])
heavy = ("lightning", "torchmetrics", "torchvision", "matplotlib")
print("imported:", sorted(m for m in heavy if m in sys.modules))
sys.exit(code)
"""


def test_a_fully_stacked_sweep_never_imports_lightning_torchvision_or_matplotlib(tmp_path):
    args = ["train", "-m", "loss=cross_entropy,focal", "seed=0,1", *SHORT]
    command = [sys.executable, "-c", IMPORTS, *args]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 jobs: 1 stacked group of 4" in result.stdout
    assert "imported: []" in result.stdout
    assert len(list(tmp_path.glob("multirun/*/*/*/confusion_matrix.png"))) == 4


@pytest.mark.slow
def test_a_sweep_resumes_across_launchers_and_chunks_give_the_same_results(tmp_path):
    sweep = ["optimizer=sgd,adamw", "seed=0,1", *SHORT]
    basic = _lossopt("train", "-m", *sweep, "hydra/launcher=basic", cwd=tmp_path)
    assert basic.returncode == 0, basic.stderr[-3000:]
    again = _lossopt("train", "-m", *sweep, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 jobs: 4 finished earlier (skipped)" in again.stdout
    assert again.stdout.count("already FINISHED") == 4

    # Forced into chunks of 3, a fresh stacked sweep records what the basic one did.
    chunked = _lossopt(
        "train",
        "-m",
        *sweep,
        "hydra.launcher.max_members=3",
        "tracking.experiment=chunked",
        cwd=tmp_path,
    )
    assert chunked.returncode == 0, chunked.stderr[-3000:]
    assert "in 2 chunks of at most 2 members" in chunked.stdout
    back = _lossopt(
        "train", "-m", *sweep, "hydra/launcher=basic", "tracking.experiment=chunked", cwd=tmp_path
    )
    assert back.stdout.count("already FINISHED") == 4  # and the reverse direction
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {
        name: {
            (r.data.params["optimizer.name"], r.data.params["seed"]): r.data.metrics["val/loss"]
            for r in client.search_runs([client.get_experiment_by_name(name).experiment_id])
            if "mlflow.parentRunId" in r.data.tags
        }
        for name in ("lossopt", "chunked")
    }
    assert runs["lossopt"].keys() == runs["chunked"].keys() and len(runs["lossopt"]) == 4
    for key, value in runs["lossopt"].items():
        assert runs["chunked"][key] == pytest.approx(value, rel=2e-3), key


def test_configs_set_from_a_composed_job_equal_hydras_own_composition(monkeypatch):
    """Jobs that differ only in plain values take a composed job's config with those
    values set: the result must be exactly what Hydra composes, the hydra node too."""
    from hydra import initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from lossopt.core.sweep.launcher import _compose_once

    store_configs()
    register_hydra_plugins()
    hydra_own = ConfigLoaderImpl.load_sweep_config
    composed = []

    def counted(self, master, overrides):
        composed.append(list(overrides))
        return hydra_own(self, master, overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counted)
    jobs = [
        ["+experiment=digits_loss_optimizer", f"loss={loss}", f"optimizer={opt}",
         f"optimizer.lr={lr}", f"seed={seed}"]
        for loss in ("cross_entropy", "focal")
        for opt in ("sgd", "adamw")
        for lr in (0.1, "1e-3")
        for seed in (0, 1)
    ]  # fmt: skip
    jobs += [
        ["loss=focal", "loss.gamma=3.5", "trainer.max_epochs=2", "data.batch_size=32"],
        ["loss=focal", "loss.gamma=0", "trainer.max_epochs=1", "data.batch_size=16"],
        ["loss=focal", "loss.gamma=1", "trainer.max_epochs=3", "data.batch_size=8"],
        ["loss=focal", "loss.gamma=3.5", "trainer.max_epochs=2", "+trainer.max_steps=5"],
        ["optimizer=sgd", "optimizer.nesterov=true", "optimizer.momentum=0.9"],
        ["optimizer=sgd", "optimizer.nesterov=false", "optimizer.momentum=0.5"],
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=VERSION_BASE):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(CONFIG_NAME, [], run_mode=RunMode.MULTIRUN)
        _compose_once(loader)
        for overrides in jobs:
            ours = loader.load_sweep_config(master, overrides)
            loader.composed.clear()  # the launcher's second request, not this test's
            # What the launcher and Hydra's run_job do to a config handed out.
            OmegaConf.set_readonly(ours.hydra, True)
            hydras = hydra_own(loader, master, overrides)
            assert OmegaConf.to_container(ours) == OmegaConf.to_container(hydras), overrides
            assert OmegaConf.to_yaml(ours, resolve=False) == OmegaConf.to_yaml(hydras)
            assert OmegaConf.is_struct(ours) and OmegaConf.is_struct(hydras)
    # One composition per (loss, optimizer) of the grid, and per other structure.
    assert len(composed) == 4 + 3, composed
    # Values that Hydra refuses are refused with Hydra's own errors.
    from hydra.errors import ConfigCompositionException

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=VERSION_BASE):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(CONFIG_NAME, [], run_mode=RunMode.MULTIRUN)
        _compose_once(loader)
        loader.load_sweep_config(master, ["optimizer=sgd", "optimizer.lr=0.1"])
        with pytest.raises(ConfigCompositionException, match="optimizer.lr=fast"):
            loader.load_sweep_config(master, ["optimizer=sgd", "optimizer.lr=fast"])
        loader.load_sweep_config(master, ["loss=focal", "loss.gamma=2"])
        with pytest.raises(ConfigCompositionException, match="loss.gamma=null"):
            loader.load_sweep_config(master, ["loss=focal", "loss.gamma=null"])


def test_a_member_is_recorded_through_what_hydras_run_job_does(tmp_path, monkeypatch):
    """``_record`` is Hydra's ``run_job`` less two copies: the same .hydra files, job
    return, working directory, environment and callbacks, for the same job."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import HydraContext, RunMode
    from omegaconf import OmegaConf

    from lossopt.core.sweep.launcher import StackingLauncher

    store_configs()
    register_hydra_plugins()
    monkeypatch.chdir(tmp_path)
    seen: list[tuple] = []

    class Probe:
        def on_job_start(self, config, task_function):
            seen.append(("start", OmegaConf.to_yaml(config), os.getcwd(), os.environ.get("X")))

        def on_job_end(self, config, job_return):
            seen.append(("end", OmegaConf.to_yaml(config), job_return.status))

    def task(cfg):
        seen.append(("task", OmegaConf.to_yaml(cfg), HydraConfig.get().runtime.output_dir))
        return cfg.seed + 0.5

    overrides = ["optimizer=sgd", "optimizer.lr=0.1", "seed=3", "+hydra.job.env_set.X=1"]
    results = {}
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=VERSION_BASE):
        loader = GlobalHydra.instance().config_loader()
        for way in ("sweep_by_hydra", "sweep_by_ours"):
            master = loader.load_configuration(
                CONFIG_NAME, [f"hydra.sweep.dir={way}"], run_mode=RunMode.MULTIRUN
            )
            launcher = StackingLauncher()
            launcher.config, launcher.task_function = master, task
            launcher.hydra_context = HydraContext(config_loader=loader, callbacks=Probe())
            job = launcher._compose(4, overrides)
            seen.clear()
            # _run: Hydra's run_job, as for a job that trains alone.
            record = launcher._run if way == "sweep_by_hydra" else launcher._record
            ret = record(job, task)
            files = {p.name: p.read_text() for p in (tmp_path / way / "4" / ".hydra").iterdir()}
            results[way] = (ret, files, list(seen), (tmp_path / way / "4" / "lossopt.log").exists())
    (hydras, hydra_files, hydra_seen, hydra_log), (ours, our_files, our_seen, our_log) = (
        results["sweep_by_hydra"],
        results["sweep_by_ours"],
    )

    def same(text: str) -> str:  # the two sweeps' folders differ by name only
        return text.replace("sweep_by_hydra", "sweep_by_ours")

    assert sorted(our_files) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    for name, text in hydra_files.items():
        assert our_files[name] == same(text), name
    assert our_log and hydra_log
    assert [s[0] for s in our_seen] == ["start", "task", "end"] == [s[0] for s in hydra_seen]
    assert our_seen[0][2:] == hydra_seen[0][2:] and our_seen[2][2:] == hydra_seen[2][2:]
    assert our_seen[1][:2] == hydra_seen[1][:2] and our_seen[1][2] == same(hydra_seen[1][2])
    for field in ("overrides", "return_value", "status", "task_name", "working_dir"):
        assert getattr(ours, field) == getattr(hydras, field), field
    assert OmegaConf.to_container(ours.cfg) == OmegaConf.to_container(hydras.cfg)
    assert ours.return_value == 3.5 and os.getcwd() == str(tmp_path)
