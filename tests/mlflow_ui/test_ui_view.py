"""What a sweep looks like in the MLflow UI: its axes, its name, the address opened."""

from __future__ import annotations

from omegaconf import OmegaConf

from lossopt.core.mlflow_ui.view import grid_size, runs_url, sweep_axes, sweep_name


def _config(params: dict, task: list[str], grids: list | None = None):
    sweeper = {"params": params, **({"grids": grids} if grids else {})}
    return OmegaConf.create({"hydra": {"sweeper": sweeper, "overrides": {"task": task}}})


def test_axes_are_the_swept_keys_in_order_under_the_childrens_param_keys():
    config = _config(
        {"loss": "cross_entropy,focal", "optimizer": "sgd,adamw,rmsprop"},
        ["optimizer.lr=0.001,0.01,0.1", "seed=0,1", "trainer.max_epochs=15"],
    )
    axes = sweep_axes(config)
    assert [key for key, _, _ in axes] == ["loss.name", "optimizer.name", "optimizer.lr", "seed"]
    assert axes[0][1] == "cross_entropy,focal" and grid_size(axes) == 36
    name = sweep_name("digits_loss_optimizer", axes, grid_size(axes))
    assert name == "digits_loss_optimizer: loss×optimizer×lr×seed (36)"


def test_grids_join_their_values_and_a_search_range_has_no_count():
    grids = [{"loss": "mse,l1"}, {"loss": "cross_entropy,mse"}]
    axes = sweep_axes(_config({"optimizer.lr": "interval(1e-4, 1)"}, [], grids))
    assert axes[0] == ("optimizer.lr", "interval(1e-4, 1)", None)
    assert axes[1] == ("loss.name", "mse,l1,cross_entropy", 3)
    assert grid_size(axes) is None
    assert sweep_name("lossopt", axes, None) == "lossopt: lr×loss"


def test_the_address_is_the_runs_page_in_model_training_mode():
    url = runs_url("http://127.0.0.1:5000", "3", "abc")
    assert url == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
        "&viewStateShareKey=abc"
    )
    assert runs_url("http://h", None) == "http://h/#/experiments"
