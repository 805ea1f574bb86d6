from pathlib import Path
from typing import Any

import pytest

from deploy.spec import (
    DeploymentError,
    Injection,
    ModelDeployment,
    assign_injections,
    load_deployment,
    parse_injection,
    read_model_entry,
)
from frontend.config import InstanceAddress, ModelConfig
from frontend.events import Mode, PartialPolicy
from model_container.config import ContainerConfig


def test_parse_injection() -> None:
    assert parse_injection("data-0:delay_ms=200,prob=0.1") == ("data-0", Injection(200, 0.1))
    assert parse_injection("m/parity-0:fail_prob=0.5") == ("m/parity-0", Injection(fail_prob=0.5))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data-0", "expected NAME:key=value"),
        ("data-0:speed=3", "expected delay_ms=, prob= or fail_prob="),
        ("data-0:delay_ms=fast", "delay_ms must be a number"),
        ("data-0:delay_ms=1,prob=2", r"prob must be within \[0, 1\]"),
    ],
)
def test_bad_injections_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(DeploymentError, match=message):
        parse_injection(text)


def test_injection_becomes_container_flags() -> None:
    def flags(injection: Injection) -> list[str]:
        config = ContainerConfig(Path("b"), 0).with_faults(injection.faults())
        return config.argv()[4:]  # after --bundle b --port 0

    assert flags(Injection(100, 0.5, 0.1)) == [
        "--delay-ms", "100", "--delay-prob", "0.5", "--fail-prob", "0.1",
    ]  # fmt: skip
    assert flags(Injection()) == []


def model(**kw: object) -> ModelDeployment:
    return ModelDeployment("m", Path("base"), Path("parity"), **kw)  # type: ignore[arg-type]


def test_instances_and_bundles_by_mode() -> None:
    coded = model(data_instances=2, parity_instances=1)
    assert coded.instance_names() == ["data-0", "data-1", "parity-0"]
    assert coded.bundle_for("parity-0") == Path("parity")
    assert model(mode=Mode.EQUAL_RESOURCES).bundle_for("parity-0") == Path("base")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"data_instances": 0}, "data_instances >= 1"),
        ({"inject": {"data-7": Injection()}}, r"cannot inject into \['data-7'\]"),
    ],
)
def test_model_checks(kw: dict[str, object], message: str) -> None:
    with pytest.raises(DeploymentError, match=message):
        model(**kw)


def test_coded_mode_needs_a_parity_bundle() -> None:
    with pytest.raises(DeploymentError, match="needs a parity bundle"):
        ModelDeployment("m", Path("base"))


def test_assign_injections_to_models() -> None:
    a, b = model(), ModelDeployment("n", Path("b"), Path("p"))
    out = assign_injections([a, b], ["n/data-1:delay_ms=5"])
    assert out[1].inject == {"data-1": Injection(5)}
    assert assign_injections([a], ["data-0:delay_ms=1"])[0].inject == {"data-0": Injection(1)}
    with pytest.raises(DeploymentError, match="say which model"):
        assign_injections([a, b], ["data-0:delay_ms=1"])
    with pytest.raises(DeploymentError, match="no model 'x'"):
        assign_injections([a], ["x/data-0:delay_ms=1"])


def test_load_deployment_file(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        """
[frontend]
grpc_port = 9001

[[models]]
name = "digits"
base = "b"
parity = "p"
k = 3
data_instances = 3
mode = "coded"
inject = ["data-0:delay_ms=10"]
group_timeout_ms = 5
partial = "unprotected"
default_output = [0.0, 1.0]
"""
    )
    d = load_deployment(path)
    assert (d.grpc_port, d.frontend_workers) == (9001, 1)
    path.write_text(path.read_text().replace("[frontend]", "[frontend]\nworkers = 3"))
    assert load_deployment(path).frontend_workers == 3
    (m,) = d.models
    assert (m.name, m.base, m.parity, m.k, m.data_instances) == (
        "digits",
        tmp_path / "b",
        tmp_path / "p",
        3,
        3,
    )
    assert m.inject == {"data-0": Injection(10)}
    assert m.settings == {
        "group_timeout_ms": 5,
        "partial": PartialPolicy.UNPROTECTED,
        "default_output": (0.0, 1.0),
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[frontend]\nport = 1\n", r"unknown \[frontend\] keys \['port'\]"),
        (
            "[frontend]\nworkers = 0\n[[models]]\nname = 'm'\nbase = 'b'\nmode = 'none'\n",
            "frontend workers: expected a whole number >= 1, got 0",
        ),
        ("[[models]]\nbase = 'b'\n", "needs a name"),
        ("[[models]]\nname = 'm'\n", "missing 'base'"),
        (
            "[[models]]\nname = 'm'\nbase = 'b'\nparity = 'p'\nspeed = 1\n",
            r"unknown keys \['speed'\]",
        ),
        ("[[models]]\nname = 'm'\nbase = 'b'\nparity = 'p'\nspeed = 1\n", "known: .*'slo_ms'"),
        (
            "[[models]]\nname = 'm'\nbase = 'b'\ndata_instances = [{ name = 'd', grpc = 'h:1' }]\n",
            "parm up starts a number of instances",
        ),
        ("[[models]\n", "cannot read deployment file"),
        ("", "expected one or more uniquely named models"),
    ],
)
def test_bad_deployment_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.toml"
    path.write_text(text)
    with pytest.raises(DeploymentError, match=message):
        load_deployment(path)


def test_r_parity_models_are_served_in_turn() -> None:
    two = ModelDeployment("m", Path("b"), parities=(Path("p0"), Path("p1")), parity_instances=3)
    assert (two.r, two.parity_bundles) == (2, (Path("p0"), Path("p1")))
    assert [two.parity_index(f"parity-{i}") for i in range(3)] == [0, 1, 0]
    assert two.bundle_for("parity-1") == Path("p1")
    assert model().r == 1
    with pytest.raises(DeploymentError, match="2 parity models need at least 2 parity instances"):
        ModelDeployment("m", Path("b"), parities=(Path("p0"), Path("p1")), parity_instances=1)


def test_deployment_file_lists_one_parity_bundle_per_index(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        '[[models]]\nname = "m"\nbase = "b"\nparity = ["p0", "p1"]\nparity_instances = 2\n'
        'code = "linear"\n'
    )
    (m,) = load_deployment(path).models
    assert m.parity_bundles == (tmp_path / "p0", tmp_path / "p1")
    assert m.settings == {"code": "linear"}


def test_one_reader_for_what_both_files_say_about_a_model(tmp_path: Path) -> None:
    entry = {
        "name": "m", "base": "b", "parity": ["p0", "p1"], "k": 3, "mode": "replicate",
        "partial": "unprotected", "slo_ms": 5, "data_instances": 2,
    }  # fmt: skip
    model = read_model_entry(entry, tmp_path, own=("data_instances",))
    assert (model.name, model.base, model.k, model.mode) == ("m", tmp_path / "b", 3, Mode.REPLICATE)
    assert model.parities == (tmp_path / "p0", tmp_path / "p1")
    assert model.settings == {"partial": PartialPolicy.UNPROTECTED, "slo_ms": 5}
    assert model.own == {"data_instances": 2}
    with pytest.raises(DeploymentError, match=r"unknown keys \['data_instances'\]"):
        read_model_entry(entry, tmp_path, own=())


@pytest.mark.parametrize(
    ("parity", "bundles", "r"),
    [([], (None, ()), 1), (["p"], ("p", ()), 1), (["p0", "p1"], (None, ("p0", "p1")), 2)],
)
def test_a_model_entry_becomes_the_frontends_model_config(
    tmp_path: Path, parity: list[str], bundles: tuple[str | None, tuple[str, ...]], r: int
) -> None:
    entry = {"name": "m", "base": "b", "parity": parity, "mode": "none", "batch_size": 4}
    data = (InstanceAddress("data-0", "h:1"),)
    config = read_model_entry(entry, tmp_path, own=()).model_config(data)
    single, several = bundles
    assert config.parity_bundle == (tmp_path / single if single else None)
    assert config.parity_bundles == tuple(tmp_path / p for p in several)
    assert (config.r, config.mode, config.batch_size, config.data) == (r, Mode.NONE, 4, data)


def test_a_deployed_model_tells_the_frontend_its_bundles_and_parity_indices() -> None:
    model = ModelDeployment(
        "m", Path("/srv/b"), parities=(Path("/srv/p0"), Path("/srv/p1")), parity_instances=3,
        settings={"code": "linear"},
    )  # fmt: skip
    data = (InstanceAddress("data-0", "h:1"), InstanceAddress("data-1", "h:2"))
    parity = tuple(InstanceAddress(f"parity-{i}", f"h:{3 + i}") for i in range(3))
    config = model.model_config(data, parity, bundle_dir=Path("/bundles"))
    assert [a.parity_index for a in config.parity] == [0, 1, 0]
    assert config.base_bundle == Path("/bundles/b")
    assert config.parity_bundle_paths() == (Path("/bundles/p0"), Path("/bundles/p1"))
    assert (config.r, config.code, config.data) == (2, "linear", data)
    assert model.model_config(data, parity).base_bundle == Path("/srv/b")


@pytest.mark.parametrize(("value", "seconds"), [('"auto"', None), ("5", 0.005), ("0", 0.0)])
def test_decode_grace_in_a_deployment_file(
    tmp_path: Path, value: str, seconds: float | None
) -> None:
    path = tmp_path / "d.toml"
    path.write_text(f'[[models]]\nname = "m"\nbase = "b"\nparity = "p"\ndecode_grace = {value}\n')
    (m,) = load_deployment(path).models
    data = (InstanceAddress("data-0", "h:1"),)
    parity = (InstanceAddress("parity-0", "h:2"),)
    assert m.model_config(data, parity).core_config().decode_grace == seconds


def test_a_bad_decode_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="decode_grace: expected auto or a number of"):
        ModelConfig("m", Path("b"), (InstanceAddress("d", "h:1"),), decode_grace="soon")
    with pytest.raises(ValueError, match="decode_grace: expected auto or milliseconds >= 0"):
        ModelConfig("m", Path("b"), (InstanceAddress("d", "h:1"),), decode_grace=-1.0)


@pytest.mark.parametrize(("value", "seconds"), [('"auto"', None), ("7.5", 0.0075)])
def test_hedge_delay_in_a_deployment_file(
    tmp_path: Path, value: str, seconds: float | None
) -> None:
    path = tmp_path / "d.toml"
    path.write_text(f'[[models]]\nname = "m"\nbase = "b"\nmode = "hedge"\nhedge_delay = {value}\n')
    (m,) = load_deployment(path).models
    config = m.model_config((InstanceAddress("data-0", "h:1"),), ()).core_config()
    assert (config.mode, config.hedge_delay) == (Mode.HEDGE, seconds)


def test_a_bad_hedge_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="hedge_delay: expected auto or a number of"):
        ModelConfig("m", Path("b"), (InstanceAddress("d", "h:1"),), hedge_delay="later")


def test_a_berrut_deployment_file_serves_the_base_model_on_its_parity_instances(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        '[[models]]\nname = "m"\nbase = "b"\nk = 3\ncode = "berrut"\nr = 2\n'
        "data_instances = 3\nparity_instances = 2\n"
    )
    (m,) = load_deployment(path).models
    assert (m.r, m.parity_bundles, m.base_answers_parity) == (2, (), True)
    assert [m.bundle_for(f"parity-{i}") for i in range(2)] == [tmp_path / "b"] * 2
    data = tuple(InstanceAddress(f"data-{i}", f"h:{i}") for i in range(3))
    parity = tuple(InstanceAddress(f"parity-{i}", f"h:{3 + i}") for i in range(2))
    config = m.model_config(data, parity)
    assert (config.code, config.r, config.parity_bundle_paths()) == ("berrut", 2, ())
    assert [a.parity_index for a in config.parity] == [0, 1]
    assert ModelDeployment("m", Path("b"), settings={"code": "berrut"}).r == 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"parity": Path("p"), "settings": {"code": "berrut"}}, "berrut code takes no parity"),
        ({"parity": Path("p"), "parities_per_group": 2}, "only a training-free code"),
        ({"settings": {"code": "berrut"}, "parities_per_group": 0}, "r must be a whole number"),
        (
            {"settings": {"code": "berrut"}, "parities_per_group": 2, "parity_instances": 1},
            "at least 2 parity instances",
        ),
    ],
)
def test_berrut_deployments_are_checked(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(DeploymentError, match=message):
        ModelDeployment("m", Path("b"), **kw)


def test_a_learned_code_deployment_file_takes_its_run_and_its_r(tmp_path: Path) -> None:
    from tests.common.learned_runs import save_learned_run
    from tests.model_container.container_process import make_bundle

    base = make_bundle(tmp_path / "b")
    save_learned_run(tmp_path / "run", base, k=3, r=2)
    path = tmp_path / "d.toml"
    path.write_text(
        '[[models]]\nname = "m"\nbase = "b"\nk = 3\ncode = "learned"\ncode_bundle = "run"\n'
        "data_instances = 3\nparity_instances = 2\n"
    )
    (m,) = load_deployment(path).models
    assert (m.r, m.parity_bundles, m.base_answers_parity) == (2, (), True)  # r: the code's
    assert [m.bundle_for(f"parity-{i}") for i in range(2)] == [base] * 2
    data = tuple(InstanceAddress(f"data-{i}", f"h:{i}") for i in range(3))
    parity = tuple(InstanceAddress(f"parity-{i}", f"h:{3 + i}") for i in range(2))
    config = m.model_config(data, parity)
    assert (config.code, config.r, config.code_bundle) == ("learned", 2, tmp_path / "run")
