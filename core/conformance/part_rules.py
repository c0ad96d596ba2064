"""The conformance rules of model, dataset and scheduler plugins: what their specs promise."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from lightning import LightningDataModule

from lossopt.core.configs import build
from lossopt.core.conformance.rules import NUM_CLASSES, NotApplicable, Rule, Subject, max_difference
from lossopt.core.data import TensorDataModule, lightning_data
from lossopt.core.errors import LossoptError
from lossopt.core.specs import DataSpec, ModelSpec

__all__ = ["DATA_RULES", "MODEL_RULES", "SCHEDULER_RULES"]

# The per-sample shapes of the shipped datasets: digits, MNIST, CIFAR-10; vector data.
IMAGE_SHAPES = ([1, 8, 8], [1, 28, 28], [3, 32, 32])
VECTOR_SHAPE = [10]


# --- models ---------------------------------------------------------------------------


def _model_spec(subject: Subject) -> ModelSpec:
    assert isinstance(subject.spec, ModelSpec), f"model '{subject.name}' is not a ModelSpec"
    return subject.spec


def _shapes(subject: Subject) -> list[list[int]]:
    """The input shapes the model accepts: images, and vector data unless image-only."""
    return list(IMAGE_SHAPES) if _model_spec(subject).image_only else [VECTOR_SHAPE, *IMAGE_SHAPES]


def _model(subject: Subject, shape: list[int]) -> torch.nn.Module:
    values = subject.values(input_shape=shape, num_outputs=NUM_CLASSES)
    return build("model", subject.name, values)


def output_shape(subject: Subject) -> None:
    for shape in _shapes(subject):
        torch.manual_seed(0)
        out = _model(subject, shape)(torch.randn(2, *shape))
        assert isinstance(out, torch.Tensor) and out.shape == (2, NUM_CLASSES), (
            f"input [2, {', '.join(map(str, shape))}] gave "
            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}, "
            f"expected (2, {NUM_CLASSES}) = [N, num_outputs]"
        )
        assert torch.isfinite(out).all(), f"input shape {shape}: the output is not finite"


def gradients_reach_parameters(subject: Subject) -> None:
    shape = _shapes(subject)[0]
    torch.manual_seed(0)
    model = _model(subject, shape)
    out = model(torch.randn(2, *shape))
    (out * torch.randn_like(out)).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if g is None or not g.any()]
    broken = [n for n, g in grads.items() if g is not None and not g.isfinite().all()]
    assert not missing, f"no (non-zero) gradient reaches {missing}"
    assert not broken, f"non-finite gradients in {broken}"


def refuses_vector_input(subject: Subject) -> None:
    if not _model_spec(subject).image_only:
        raise NotApplicable("it is not image-only")
    try:
        _model(subject, VECTOR_SHAPE)
    except LossoptError:
        return
    raise AssertionError(
        f"it declares image_only, but building it for input_shape {VECTOR_SHAPE} did not "
        f"fail with a clear error (raise LossoptError naming the model and the shape)"
    )


def model_stacked_equals_members(subject: Subject) -> None:
    """Under ``vmap(functional_call)`` over stacked parameters, each member's output
    equals the member's own forward."""
    from lossopt.core.sweep.stack import Stack

    if not _model_spec(subject).stackable:
        raise NotApplicable("it does not declare stackable")
    shape = _shapes(subject)[0]
    models = []
    for k in range(3):
        torch.manual_seed(k)
        models.append(_model(subject, shape).eval())
    x = torch.randn(4, *shape)
    stacked = Stack([SimpleNamespace(model=m) for m in models], torch.device("cpu"))
    try:
        out = stacked(x, shared=True)
    except Exception as exc:
        raise AssertionError(f"it fails under vmap: {type(exc).__name__}: {exc}") from exc
    for k, model in enumerate(models):
        with torch.no_grad():
            alone = model(x)
        assert torch.allclose(out[k], alone, rtol=1e-4, atol=1e-5), (
            f"member {k}'s stacked output differs from its own forward "
            f"(max difference {max_difference(out[k], alone):.3g})"
        )


MODEL_RULES: tuple[Rule, ...] = (
    Rule("output-shape", "[N, num_outputs], finite, for every accepted input shape", output_shape),
    Rule(
        "gradients-reach-parameters",
        "finite, non-zero gradients reach every parameter",
        gradients_reach_parameters,
    ),
    Rule("refuses-vector-input", "image-only models refuse vector data", refuses_vector_input),
    Rule(
        "stacked-equals-members",
        "stacked outputs equal each member's own",
        model_stacked_equals_members,
    ),
)


# --- datasets -------------------------------------------------------------------------


def _data(subject: Subject) -> tuple[LightningDataModule | TensorDataModule, dict]:
    assert isinstance(subject.spec, DataSpec), f"dataset '{subject.name}' is not a DataSpec"
    values = subject.values()
    try:
        data = build("data", subject.name, values)
    except LossoptError as exc:  # e.g. files not on this machine (tests never download)
        raise NotApplicable(f"it cannot be built here: {exc}") from None
    return data, values


def _check_batch(split: str, batch, info: dict) -> None:
    x, y = batch
    shape = [int(d) for d in info["input_shape"]]
    task, classes, outputs = info["task"], int(info["num_classes"]), int(info["num_outputs"])
    assert list(x.shape[1:]) == shape, f"{split} inputs {list(x.shape[1:])}, info says {shape}"
    assert x.is_floating_point(), f"{split} inputs are {x.dtype}, not floating point"
    if task == "multiclass":
        assert y.dtype == torch.int64 and y.dim() == 1, f"{split} targets must be int64 [N]"
        inside = int(y.min()) >= 0 and int(y.max()) < classes
        assert inside, f"{split} classes outside [0, {classes})"
    else:
        width = classes if task == "multilabel" else outputs
        assert y.is_floating_point() and list(y.shape[1:]) == [width], (
            f"{split} targets {y.dtype} {list(y.shape)}, a {task} task needs float [N, {width}]"
        )
    if task != "regression":
        assert outputs == classes, f"num_outputs {outputs} != num_classes {classes}"


def splits_match_info(subject: Subject) -> None:
    data, info = _data(subject)
    assert isinstance(data, LightningDataModule | TensorDataModule), (
        f"the factory returned a {type(data).__name__}, not a LightningDataModule "
        "or a TensorDataModule"
    )
    missing = [k for k in ("task", "num_classes", "num_outputs", "input_shape") if k not in info]
    assert not missing, f"its spec's info does not declare {missing}"
    if isinstance(data, TensorDataModule):
        for key in ("task", "num_classes", "num_outputs", "input_shape"):
            actual, declared = getattr(data, key), info[key]
            if key == "input_shape":
                actual, declared = list(actual), [int(d) for d in declared]
            assert actual == declared, f"the data has {key}={actual!r}, its info says {declared!r}"
    trained = lightning_data(data)  # what Lightning's Trainer is given
    trained.prepare_data()
    trained.setup("fit")
    for split, loader in (("train", trained.train_dataloader), ("val", trained.val_dataloader)):
        _check_batch(split, next(iter(loader())), info)
    trained.setup("test")
    _check_batch("test", next(iter(trained.test_dataloader())), info)


def stackable_data(subject: Subject) -> None:
    if not subject.spec.stackable:
        raise NotApplicable("it does not declare stackable")
    data, _ = _data(subject)
    assert isinstance(data, TensorDataModule), (
        f"it declares stackable, but returns a {type(data).__name__}: the vectorized "
        f"launcher indexes a TensorDataModule's in-memory splits"
    )


DATA_RULES: tuple[Rule, ...] = (
    Rule("splits-match-info", "train/val/test batches match the declared info", splits_match_info),
    Rule("stackable-is-in-memory", "stackable data is a TensorDataModule", stackable_data),
)


# --- schedulers -----------------------------------------------------------------------

TOTAL_STEPS = 40


def runs_total_steps(subject: Subject) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    schedule = subject.build(optimizer=optimizer, total_steps=TOTAL_STEPS)
    for step in range(TOTAL_STEPS):
        lr = optimizer.param_groups[0]["lr"]
        assert math.isfinite(lr) and lr >= 0, f"step {step}: learning rate {lr}"
        optimizer.step()
        schedule.step()


SCHEDULER_RULES: tuple[Rule, ...] = (
    Rule(
        "runs-total-steps",
        f"runs for total_steps ({TOTAL_STEPS}) with finite rates",
        runs_total_steps,
    ),
)
