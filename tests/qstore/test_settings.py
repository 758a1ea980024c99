"""Training settings are declared once: the dataclasses, ``qstore train`` and sweep configs agree on them."""

from __future__ import annotations

import dataclasses

import pytest

from qstore import settings
from qstore.cli import parser
from qstore.cli.train import REPRODUCE_DEFAULTS, REPRODUCE_OPTIONS, configs
from qstore.data import DataConfig
from qstore.ml import QuantumLayerConfig, TrainConfig
from qstore.ml.sweep import DATA, SETTINGS, parse_config, train_config

CONFIGS = (QuantumLayerConfig, TrainConfig, DataConfig)


def other_value(spec: settings.Setting, default):
    """A valid value of ``spec`` that is not its default."""
    if spec.kind is bool:
        return not default
    if spec.kind is tuple:
        return tuple(c for c in spec.choices if c not in default)[:1] + tuple(default)
    if spec.choices:
        return next(c for c in spec.choices if c != default)
    if spec.name == "dataset":
        return "digits:1,7"
    if default is None:
        return 7
    return default / 2 if spec.kind is float else default + 3


@pytest.mark.parametrize("config_class", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_is_a_declared_setting(config_class):
    for field in dataclasses.fields(config_class):
        nested = dataclasses.is_dataclass(field.default_factory)
        assert "setting" in field.metadata or nested, f"{config_class.__name__}.{field.name} is not declared"
        if not nested:
            spec = field.metadata["setting"]
            assert spec.help and spec.check(field.default) is None, f"{spec.name}: its default fails its check"


def test_every_setting_is_a_train_option_with_the_same_default():
    defaults = vars(parser().parse_args(["train"]))
    declared = [*settings.declared(TrainConfig), *settings.declared(DataConfig)]
    for spec, default in declared:
        assert defaults[spec.name] == default, spec.name
    data, train = configs(parser().parse_args(["train"]))
    assert (data, train) == (DataConfig(), TrainConfig())


def test_every_setting_set_on_the_command_line_reaches_its_config():
    for spec, default in [*settings.declared(TrainConfig), *settings.declared(DataConfig)]:
        value = other_value(spec, default)
        words = [str(v) for v in value] if spec.kind is tuple else [] if spec.kind is bool else [str(value)]
        if spec.name == "shots":  # shots apply to the sampled gradient methods
            words += ["--grad", "spsa"]
        data, train = configs(parser().parse_args(["train", spec.option, *words]))
        assert {**settings.values(data), **settings.values(train)}[spec.name] == value, spec.name


def test_every_setting_is_a_sweep_key_with_the_same_default():
    assert {name: default for name, (_, default) in SETTINGS.items()} == {
        spec.name: settings.plain(default) for spec, default in settings.declared(TrainConfig)}
    assert {name: default for name, (_, default) in DATA.items()} == {
        spec.name: settings.plain(default) for spec, default in settings.declared(DataConfig)}
    for spec, default in settings.declared(TrainConfig):
        value = other_value(spec, default)
        fixed = {spec.name: settings.plain(value)} | ({"gradient": "spsa"} if spec.name == "shots" else {})
        config = parse_config({"fixed": fixed, "space": {"epochs" if spec.name != "epochs" else "lr": [1]}})
        (run,) = config.settings()
        assert settings.values(train_config(run))[spec.name] == value, spec.name


def test_reproduce_exposes_its_options_with_the_reference_defaults():
    args = vars(parser().parse_args(["reproduce"]))
    for spec, default in settings.declared(TrainConfig):
        if spec.name in REPRODUCE_OPTIONS:
            assert args[spec.name] == REPRODUCE_DEFAULTS.get(spec.name, default)
        else:
            assert spec.name not in args
    data, train = configs(parser().parse_args(["reproduce"]))
    assert data == DataConfig() and train == TrainConfig(gradient="parameter-shift", shots=1024)


def test_an_adjoint_run_ignores_shots():
    assert TrainConfig.from_settings({"gradient": "adjoint", "shots": 64}).shots is None
    assert TrainConfig.from_settings({"gradient": "spsa", "shots": 64}).shots == 64


@pytest.mark.parametrize(
    ("check", "value", "problem"),
    [
        (settings.integer(1), 0, "must be an integer >= 1"),
        (settings.integer(1), True, "must be an integer >= 1"),
        (settings.integer(1, 24), 25, "must be an integer in 1..24"),
        (settings.integer(1, optional=True), 1.5, "must be an integer >= 1 or none"),
        (settings.number(0, 1, closed_high=True), 1.5, "must be a number in (0, 1]"),
        (settings.number(0), float("nan"), "must be a number in (0, inf)"),
        (settings.choice(("a", "b")), "c", "must be one of a, b"),
        (settings.subset(("X", "Y")), ["X", "X"], "must be a non-empty list of distinct values from X, Y"),
        (settings.subset(("X", "Y")), [], "must be a non-empty list of distinct values from X, Y"),
        (settings.switch, 1, "must be true or false"),
        (settings.text, "", "must be a non-empty string"),
    ],
)
def test_checks_name_the_problem(check, value, problem):
    assert check(value) == problem


@pytest.mark.parametrize(
    ("check", "value"),
    [(settings.integer(1), 1), (settings.integer(1, optional=True), None), (settings.number(0, 1, closed_high=True), 1),
     (settings.choice(("a", "b")), "b"), (settings.subset(("X", "Y")), ("Y", "X")), (settings.switch, False)],
)
def test_checks_pass_good_values(check, value):
    assert check(value) is None


def test_a_config_names_the_field_and_the_value():
    with pytest.raises(ValueError, match=r"n_qubits must be an integer in 1\.\.24, got 30"):
        QuantumLayerConfig(n_qubits=30)
    with pytest.raises(ValueError, match="features must be an integer >= 1, got 0"):
        DataConfig(features=0)
