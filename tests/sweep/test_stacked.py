"""Jobs trained as the members of one stacked model give the results of the same jobs
run alone (same initial weights, data order, metrics), each with its own optimizer
settings, schedule and checkpoint; a member that fails fails alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from omegaconf import DictConfig

from lossopt.core.composition import compose
from lossopt.core.sweep.launcher import stack_key
from lossopt.core.sweep.stacked import train_stack
from lossopt.core.train import run

SHORT = ["tracking=none", "trainer.enable_progress_bar=false", "trainer.max_epochs=3"]
# Several losses (with and without class weights), optimizers (momentum, weight decay
# split, adaptive), schedules per step and per epoch, and seeds in one stack.
MEMBERS = [
    ["loss=cross_entropy", "optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0.9"],
    ["loss=cross_entropy", "optimizer=sgd", "optimizer.lr=0.1", "seed=1"],
    ["loss=focal", "optimizer=adamw", "optimizer.lr=0.01", "scheduler=cosine"],
    ["loss=mse", "optimizer=rmsprop", "optimizer.lr=0.001", "scheduler=step"],
    ["loss=multi_margin", "loss.weight=balanced", "optimizer=adam", "optimizer.lr=0.003"],
    ["loss=nll", "optimizer=adamw", "optimizer.lr=0.01", "optimizer.weight_decay=0.1"],
]


def _configs(members: list[list[str]], *extra: str) -> list[DictConfig]:
    return [compose([*SHORT, *extra, *overrides]) for overrides in members]


def _series(history, key: str) -> list[float]:
    return [value for name, value, _, _ in sorted(history, key=lambda e: e[2]) if name == key]


@pytest.fixture(scope="module")
def stacked(tmp_path_factory) -> tuple[list[DictConfig], list, list[Path]]:
    configs = _configs(MEMBERS)
    assert len({stack_key(cfg)[0] for cfg in configs}) == 1  # they do share one stack
    folders = [tmp_path_factory.mktemp(f"member{i}") for i in range(len(configs))]
    return configs, train_stack(configs, folders), folders


def _alone(overrides: list[str], folder: Path) -> tuple:
    """The job run alone, as ``lossopt train`` runs it, and its recorded metrics."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = run(compose([*SHORT, *overrides, "tracking=mlflow", f"tracking.uri={uri}"]), folder)
    client = MlflowClient(uri)
    history = {
        key: [
            m.value
            for m in sorted(client.get_metric_history(result.run_id, key), key=lambda m: m.step)
        ]
        for key in ("val/loss", "train/loss_step")
    }
    return result, history


@pytest.mark.slow
def test_each_member_trains_as_its_job_run_alone(stacked, tmp_path):
    configs, outcomes, _ = stacked
    for i, (overrides, outcome) in enumerate(zip(MEMBERS, outcomes, strict=True)):
        alone, recorded = _alone(overrides, tmp_path / str(i))
        assert outcome.error is None
        # Lightning's loop and the stack round differently; over 3 epochs that stays
        # far below what another batch order or initialisation gives (~1e-2).
        for key in ("val/loss", "train/loss_step"):
            assert len(_series(outcome.history, key)) == len(recorded[key]) > 0
            assert torch.allclose(
                torch.tensor(_series(outcome.history, key)),
                torch.tensor(recorded[key]),
                rtol=2e-3,
                atol=2e-4,
            ), (overrides, key)
        assert outcome.objective == pytest.approx(alone.objective, abs=0.012)
        for key, value in alone.metrics.items():
            assert outcome.metrics[key] == pytest.approx(value, abs=0.012), key


@pytest.mark.slow
def test_a_member_checkpoint_loads_into_the_job_module_like_a_job_checkpoint(stacked, tmp_path):
    configs, outcomes, folders = stacked
    cfg, outcome = configs[4], outcomes[4]  # multi_margin with class weights: a loss buffer
    path = Path(outcome.best_checkpoint)
    assert path.parent == folders[4] / "checkpoints"
    saved = torch.load(path, weights_only=True)
    alone = run(cfg, tmp_path)
    reference = torch.load(alone.best_checkpoint, weights_only=False)
    assert set(saved["state_dict"]) == set(reference["state_dict"])
    assert {"epoch", "global_step", "state_dict"} <= set(saved)
    from lossopt.core.configs import build, plugin_values
    from lossopt.core.train import _loss_values, _module

    data = build("data", cfg.data.name, plugin_values(cfg, "data"))
    model = build("model", cfg.model.name, plugin_values(cfg, "model"))
    module = _module(cfg, data, model, build("loss", cfg.loss.name, _loss_values(cfg, data)))
    module.load_state_dict(saved["state_dict"])  # strict: every key, every shape
    # The weights are the best epoch's: evaluating them gives the member's best value.
    x, y = data.splits["val"]
    accuracy = (module(x).argmax(1) == y).float().mean().item()
    assert accuracy == pytest.approx(outcome.objective, abs=1e-6)


@pytest.mark.slow
def test_smaller_chunks_give_the_same_results(stacked, tmp_path):
    configs, outcomes, _ = stacked
    halves = [configs[:3], configs[3:]]
    chunked = [o for half in halves for o in train_stack(half, [tmp_path] * len(half))]
    for whole, part in zip(outcomes, chunked, strict=True):
        assert torch.allclose(
            torch.tensor(_series(whole.history, "val/loss")),
            torch.tensor(_series(part.history, "val/loss")),
            rtol=1e-4,
            atol=1e-6,
        )


@pytest.mark.slow
def test_bf16_mixed_members_train_as_their_jobs_run_alone_in_bf16(tmp_path):
    members = [MEMBERS[0], MEMBERS[2]]
    bf16 = _configs(members, "trainer.precision=bf16-mixed")
    assert len({stack_key(cfg)[0] for cfg in bf16}) == 1
    outcomes = train_stack(bf16, [tmp_path / "a", tmp_path / "b"])
    float32 = train_stack(_configs(members), [tmp_path / "c", tmp_path / "d"])
    for i, (overrides, outcome) in enumerate(zip(members, outcomes, strict=True)):
        _, recorded = _alone([*overrides, "trainer.precision=bf16-mixed"], tmp_path / str(i))
        stacked = torch.tensor(_series(outcome.history, "val/loss"))
        # bf16 keeps 8 bits of mantissa and the stack's batched products round apart
        # from the job's: ~3e-3 relative over 3 epochs here (float32: ~1e-5).
        assert torch.allclose(stacked, torch.tensor(recorded["val/loss"]), rtol=0.02), overrides
        in_float32 = torch.tensor(_series(float32[i].history, "val/loss"))
        assert not torch.allclose(stacked, in_float32, rtol=1e-4), "autocast was not on"


def test_a_diverging_member_fails_alone_and_stops_updating(tmp_path):
    configs = _configs([["optimizer.lr=0.01"], ["optimizer=sgd", "optimizer.lr=1e30"]])
    healthy, diverged = train_stack(configs, [tmp_path / "a", tmp_path / "b"])
    assert healthy.error is None and healthy.objective > 0.5
    assert "diverged" in str(diverged.error) and "epoch 0" in str(diverged.error)
    assert len(_series(healthy.history, "val/loss")) == 3
    assert not diverged.metrics  # a failed job is not tested


def test_a_member_whose_optimizer_cannot_be_built_fails_alone(tmp_path):
    # torch refuses Nesterov without momentum when the optimizer is built.
    bad = ["optimizer=sgd", "optimizer.nesterov=true", "optimizer.lr=0.1"]
    configs = _configs([["optimizer=sgd", "optimizer.lr=0.1"], bad])
    good, refused = train_stack(configs, [tmp_path / "a", tmp_path / "b"])
    assert good.error is None and good.best_checkpoint
    assert "Nesterov" in str(refused.error)


def test_a_stacks_linear_weight_gradients_are_each_jobs_own_bit_for_bit():
    """On the CPU the batched product vmap makes of a weight gradient rounds apart from
    the job's own (MKL: one unit in the last place, in ~14% of a [10 x 128] output
    layer's entries); a stack computes each member's as autograd does for the job."""
    import copy

    from torch import nn
    from torch.func import functional_call, stack_module_state, vmap

    from lossopt.core.sweep.stack import member_gradients

    torch.manual_seed(0)
    k, batch = 72, 64
    models = [nn.Linear(128, 10) for _ in range(k)]
    params, _ = stack_module_state(models)
    params = {n: p.detach().requires_grad_() for n, p in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    member_gradients(base)
    x, grad = torch.randn(k, batch, 128), torch.randn(k, batch, 10)
    out = vmap(lambda p, x: functional_call(base, p, (x,)))(params, x)
    out.backward(grad)
    for member, model in enumerate(models):
        alone = model(x[member])
        assert torch.allclose(alone, out[member].detach(), rtol=1e-6, atol=1e-6)
        alone.backward(grad[member])
        assert torch.equal(model.weight.grad, params["weight"].grad[member]), member
        assert torch.allclose(model.bias.grad, params["bias"].grad[member], rtol=1e-6)
    # Inputs of more dimensions per member take vmap's own batched products.
    x = torch.randn(3, 5, 4, 128)
    params = {n: p[:3].detach().requires_grad_() for n, p in params.items()}
    out = vmap(lambda p, x: functional_call(base, p, (x,)))(params, x)
    for member in range(3):
        expected = torch.nn.functional.linear(
            x[member], params["weight"][member].detach(), params["bias"][member].detach()
        )
        assert torch.allclose(out[member].detach(), expected, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert params["weight"].grad.shape == (3, 10, 128)
