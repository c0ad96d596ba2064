"""The conformance rules of a loss plugin.

Every rule runs the loss on the sample problem of each task it declares, through the
adapter, as training does. Rules that need a scalar value are not applicable to a loss
that gives none: only ``finite-scalar`` fails for it.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from lossopt.core.adapter import adapt, scores
from lossopt.core.configs import NAME_FIELD, build, check_values, parameters
from lossopt.core.conformance.rules import (
    NUM_CLASSES,
    NotApplicable,
    Rule,
    Subject,
    composed_values,
    factory_kwargs,
    max_difference,
    same,
    sample_problem,
)
from lossopt.core.specs import Contract, LossSpec

__all__ = ["LOSS_RULES"]

_NOT_SCALAR = "needs a scalar loss value, which the loss does not give (see finite-scalar)"


def _spec(subject: Subject) -> LossSpec:
    spec = subject.spec
    assert isinstance(spec, LossSpec), f"loss '{subject.name}' is not described by a LossSpec"
    return spec


def _tasks(subject: Subject) -> Iterator[tuple[str, Contract]]:
    spec = _spec(subject)
    assert spec.contracts, f"loss '{subject.name}' declares no task"
    for task in subject.tasks or spec.tasks:
        yield task, spec.contracts[task]


def _value(loss: nn.Module, output: Tensor, target: Tensor, contract: Contract, task: str):
    value = loss(*adapt(output, target, contract, task))
    if not isinstance(value, Tensor) or value.dim() != 0:
        raise NotApplicable(_NOT_SCALAR)
    return value


def finite_scalar(subject: Subject) -> None:
    for task, contract in _tasks(subject):
        output, target = sample_problem(task)
        value = subject.build()(*adapt(output, target, contract, task))
        where = f"on {task}"
        assert isinstance(value, Tensor), f"{where}: returned {type(value).__name__}, not a tensor"
        assert value.dim() == 0, f"{where}: expected a scalar, got shape {tuple(value.shape)}"
        assert torch.isfinite(value), f"{where}: not finite ({value.item()})"


def gradients_reach_output(subject: Subject) -> None:
    for task, contract in _tasks(subject):
        loss = subject.build()
        output, target = sample_problem(task)
        output.requires_grad_(True)
        _value(loss, output, target, contract, task).backward()
        where = f"on {task}"
        assert output.grad is not None, f"{where}: the gradient does not reach the output"
        assert torch.isfinite(output.grad).all(), f"{where}: the output's gradient is not finite"
        assert output.grad.abs().sum() > 0, f"{where}: the output's gradient is zero"
        for name, param in loss.named_parameters():
            assert param.grad is not None, f"{where}: its parameter '{name}' gets no gradient"
            assert torch.isfinite(param.grad).all(), f"{where}: '{name}' has a non-finite gradient"


def sum_is_mean_times_elements(subject: Subject) -> None:
    spec = _spec(subject)
    if "reduction" not in {p.name for p in parameters(spec)}:
        raise NotApplicable("it has no 'reduction' parameter")
    for reduction in ("mean", "sum"):
        if check_values("loss", subject.name, spec, subject.values(reduction=reduction)):
            raise NotApplicable(f"it does not accept reduction={reduction!r}")
    for task, contract in _tasks(subject):
        output, target = sample_problem(task)
        mean, total = (
            float(
                _value(
                    build("loss", subject.name, subject.values(reduction=r)),
                    output,
                    target,
                    contract,
                    task,
                )
            )
            for r in ("mean", "sum")
        )
        counts = (len(output), adapt(output, target, contract, task)[0].numel())
        assert any(abs(total - mean * n) <= 1e-4 * max(1.0, abs(total)) for n in counts), (
            f"on {task}: sum {total:.6g} is not mean {mean:.6g} x the number of elements "
            f"({counts[0]} samples or {counts[1]} values)"
        )


def _aligned(target: Tensor, task: str, sign: float) -> Tensor:
    """Raw outputs that agree (sign=1) or disagree (sign=-1) with the target."""
    hot = F.one_hot(target, NUM_CLASSES).float() if task == "multiclass" else target
    if task == "multiclass" and sign < 0:
        hot = F.one_hot((target + 1) % NUM_CLASSES, NUM_CLASSES).float()
        sign = 1.0
    return sign * (10.0 * hot - 5.0)


def contract_is_honest(subject: Subject) -> None:
    """The loss consumes the adapter's form: saturated outputs in that form (probabilities
    of exactly 0 or 1, very negative log-probabilities) give finite values, and an output
    that agrees with the target costs less than one that contradicts it."""
    checked = False
    for task, contract in _tasks(subject):
        if task == "regression":
            continue  # raw values: no form to saturate, no class to agree with
        checked = True
        loss = subject.build().requires_grad_(False)
        output, target = sample_problem(task)
        saturated = float(_value(loss, output * 100.0, target, contract, task))
        assert torch.isfinite(torch.tensor(saturated)), (
            f"on {task}: not finite ({saturated}) for saturated {contract.output} inputs; "
            f"the loss must accept every value of the form it declares"
        )
        if callable(getattr(loss, "scores", None)):
            continue  # its own head reads features, not class scores
        good = float(_value(loss, _aligned(target, task, 1.0), target, contract, task))
        bad = float(_value(loss, _aligned(target, task, -1.0), target, contract, task))
        assert good < bad, (
            f"on {task}: an output agreeing with the target costs {good:.4g}, one "
            f"contradicting it {bad:.4g}; does the loss consume {contract.output} outputs and "
            f"{contract.target} targets, as it declares?"
        )
    if not checked:
        raise NotApplicable("regression only: the loss consumes the raw values")


def float64_works(subject: Subject) -> None:
    for task, contract in _tasks(subject):
        output, target = sample_problem(task)
        value = _value(subject.build().double(), output.double(), target, contract, task)
        assert value.dtype == torch.float64, f"on {task}: float64 inputs gave {value.dtype}"
        assert torch.isfinite(value), f"on {task}: not finite in float64 ({value.item()})"


def bf16_autocast(subject: Subject) -> None:
    for task, contract in _tasks(subject):
        loss = subject.build()
        output, target = sample_problem(task)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = _value(loss, output.bfloat16(), target, contract, task)
        assert torch.isfinite(value.float()), f"on {task}: not finite under bf16 autocast"


def _with_tensors(subject: Subject, reverse: bool = False) -> dict:
    """Tensor parameters (class weights …) set to per-class values unless given."""
    weights = [0.5 + i for i in range(NUM_CLASSES)]
    weights = weights[::-1] if reverse else weights
    given = subject.params
    tensors = [p.name for p in parameters(subject.spec) if p.tensor and p.name not in given]
    return subject.values(**{name: weights for name in tensors})


def buffers_follow_the_module(subject: Subject) -> None:
    """Tensors of its own are registered (buffers or parameters): they move with
    ``.to()`` and are saved and restored by ``state_dict``."""
    task, contract = next(_tasks(subject))
    torch.manual_seed(0)
    loss = build("loss", subject.name, _with_tensors(subject))
    plain = [k for k, v in vars(loss).items() if isinstance(v, Tensor)]
    assert not plain, (
        f"tensor attribute(s) {plain} are not registered: they do not move with .to() nor "
        f"go into state_dict; use register_buffer (or nn.Parameter)"
    )
    own = dict(loss.state_dict())
    if not own:
        raise NotApplicable("it has no tensors of its own")
    moved = {k: v for k, v in loss.to(torch.float64).state_dict().items() if v.is_floating_point()}
    stayed = [k for k, v in moved.items() if v.dtype != torch.float64]
    assert not stayed, f"{stayed} did not move with .to(torch.float64)"
    loss.to(torch.float32)
    torch.manual_seed(1)
    twin = build("loss", subject.name, _with_tensors(subject, reverse=True))
    twin.load_state_dict(loss.state_dict())
    output, target = sample_problem(task)
    a = _value(loss, output, target, contract, task)
    b = _value(twin, output, target, contract, task)
    assert torch.allclose(a, b), (
        f"on {task}: a loss restored from another's state_dict gives {b.item():.6g}, "
        f"the original {a.item():.6g}: part of its state is not in state_dict"
    )


def pickles(subject: Subject) -> None:
    task, contract = next(_tasks(subject))
    torch.manual_seed(0)
    loss = subject.build()
    copy = pickle.loads(pickle.dumps(loss))
    output, target = sample_problem(task)
    a = _value(loss, output, target, contract, task)
    b = _value(copy, output, target, contract, task)
    assert torch.equal(a, b), f"the unpickled loss gives {b.item()}, the original {a.item()}"


def _module_state(module: nn.Module) -> dict:
    public = {k: v for k, v in vars(module).items() if not k.startswith("_")}
    return {**public, **{f"state:{k}": v for k, v in module.state_dict().items()}}


def config_round_trip(subject: Subject) -> None:
    """The config Hydra composes for ``loss=NAME`` builds the loss its factory builds
    when called directly with the spec's defaults."""
    values = composed_values(subject)
    torch.manual_seed(0)
    from_config = build("loss", subject.name, values)
    torch.manual_seed(0)
    direct = subject.spec.factory(**factory_kwargs(subject))
    assert type(from_config) is type(direct), (
        f"the config builds a {type(from_config).__name__}, the factory a {type(direct).__name__}"
    )
    a, b = _module_state(from_config), _module_state(direct)
    differ = sorted(k for k in a.keys() | b.keys() if not same(a.get(k), b.get(k)))
    assert not differ, (
        f"built from its config ({OmegaConf.to_yaml({NAME_FIELD: subject.name, **values})!r}) "
        f"it differs from the factory's own defaults in {differ}"
    )


def metric_scores(subject: Subject) -> None:
    loss = subject.build()
    if not callable(getattr(loss, "scores", None)):
        raise NotApplicable("metrics judge the model's output (the loss has no head of its own)")
    task, _ = next(_tasks(subject))
    output, _ = sample_problem(task)
    judged = scores(loss, output)
    assert judged.dim() == 2 and judged.shape[0] == output.shape[0], (
        f"scores(output) must give one row of class scores per sample, got shape "
        f"{tuple(judged.shape)}"
    )


def stacked_equals_members(subject: Subject) -> None:
    """Under the vectorized launcher (``vmap`` over members), each member's loss value
    equals the loss computed for that member alone."""
    from lossopt.core.sweep.stack import Losses

    if not _spec(subject).stackable:
        raise NotApplicable("it does not declare stackable")
    members = 3
    for task, contract in _tasks(subject):
        torch.manual_seed(0)
        loss = subject.build()
        cfg = OmegaConf.create({"loss": {NAME_FIELD: subject.name, **subject.values()}})
        stacked = Losses([SimpleNamespace(cfg=cfg, loss=loss)] * members, task)
        pairs = [sample_problem(task, seed=k) for k in range(members)]
        output = torch.stack([o for o, _ in pairs])
        for shared in (False, True):
            target = pairs[0][1] if shared else torch.stack([t for _, t in pairs])
            try:
                values, _ = stacked(output, target, shared)
            except Exception as exc:
                raise AssertionError(
                    f"on {task}: the vectorized path fails: {type(exc).__name__}: {exc}"
                ) from exc
            alone = torch.stack(
                [
                    _value(loss, output[k], pairs[0 if shared else k][1], contract, task)
                    for k in range(members)
                ]
            )
            assert values.shape == alone.shape and torch.allclose(
                values, alone, rtol=1e-5, atol=1e-6
            ), (
                f"on {task}: stacked values {values.tolist()} differ from the members' own "
                f"{alone.tolist()} (max difference {max_difference(values, alone):.3g})"
            )


LOSS_RULES: tuple[Rule, ...] = (
    Rule("finite-scalar", "a finite scalar for each declared task", finite_scalar),
    Rule(
        "gradients-reach-output",
        "finite gradients reach the output and the loss's own parameters",
        gradients_reach_output,
    ),
    Rule("sum-is-mean-times-elements", "sum = mean x elements", sum_is_mean_times_elements),
    Rule("contract-is-honest", "consumes the forms it declares", contract_is_honest),
    Rule("float64", "float64 inputs give a finite float64 value", float64_works),
    Rule("bf16-autocast", "finite under bf16 autocast on CPU", bf16_autocast),
    Rule(
        "buffers-follow-module",
        "its tensors move with .to() and survive state_dict",
        buffers_follow_the_module,
    ),
    Rule("pickles", "pickles (spawned workers need it)", pickles),
    Rule("config-round-trip", "its Hydra config builds an equal loss", config_round_trip),
    Rule("metric-scores", "its own class scores are [N, C]", metric_scores),
    Rule(
        "stacked-equals-members",
        "vectorized per-member values equal the values alone",
        stacked_equals_members,
    ),
)
