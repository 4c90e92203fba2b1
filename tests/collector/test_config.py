"""CollectorConfig: defaults, YAML + environment + overrides precedence, errors that name every field."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
from pathlib import Path

import pytest

from spendgate_collector.config import CollectorConfig, load_config, split_host_port
from spendgate_collector.errors import ConfigError
from spendgate_collector.keys.file import parse_keys_document


def test_defaults_are_the_embedded_ones() -> None:
    config = load_config(environ={})
    assert (Path("spendgate-data/spendgate.db"), "127.0.0.1:4317", "127.0.0.1:4318", "127.0.0.1:8788", 90) == (
        config.db,
        config.otlp_grpc,
        config.otlp_http,
        config.api,
        config.retention_days,
    )
    assert CollectorConfig() == config


def test_option_beats_environment_beats_file(tmp_path: Path) -> None:
    path = tmp_path / "spendgate.yaml"
    path.write_text(
        "proxy:\n  listen: 0.0.0.0:8787\n"
        "collector:\n  db: /data/file.db\n  retention_days: 30\n  api: 127.0.0.1:9000\n  otlp_http: 'off'\n"
    )
    environ = {"SPENDGATE_COLLECTOR_RETENTION_DAYS": "60", "SPENDGATE_COLLECTOR_DB": "/data/env.db"}
    config = load_config(path, environ=environ, db="/data/option.db", otlp_grpc=None)
    assert (Path("/data/option.db"), 60, "127.0.0.1:9000", None, "127.0.0.1:4317") == (
        config.db,
        config.retention_days,
        config.api,
        config.otlp_http,
        config.otlp_grpc,
    )


def test_config_file_named_by_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("retention_days: 7\n")
    assert 7 == load_config(environ={"SPENDGATE_COLLECTOR_CONFIG": str(path)}).retention_days


def test_every_bad_field_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("retention_days: -3\notlp_grpc: nowhere\nqueue_max_bytes: lots\ncolour: blue\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    for field in ("retention_days", "otlp_grpc", "queue_max_bytes", "colour"):
        assert f"{field}: " in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "must be a mapping"),
        ("a: [unclosed", "not valid YAML"),
    ],
)
def test_unreadable_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown collector setting"):
        load_config(environ={}, colour="blue")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:4317", ("127.0.0.1", 4317)),
        ("[::1]:0", ("::1", 0)),
        ("collector.internal:80", ("collector.internal", 80)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert expected == split_host_port(address)


@pytest.mark.parametrize("value", ["off", "", "none", None, False])
def test_listeners_can_be_switched_off(value: object) -> None:
    assert CollectorConfig(api=value).api is None  # type: ignore[arg-type]


def test_keys_document_errors_name_the_entry() -> None:
    with pytest.raises(ValueError, match=r"keys\[1\]: each key needs an 'id'"):
        parse_keys_document({"version": 1, "keys": [{"id": "k1"}, {"user": "x"}]})
    with pytest.raises(ValueError, match="unsupported keys file version"):
        parse_keys_document({"version": 2, "keys": []})
