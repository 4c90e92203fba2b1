"""The committed control-plane code is what ``control.proto`` generates today."""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from spendgate_semconv import gen_control


def test_committed_generated_code_matches_the_proto() -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools is a dev dependency; install it to check the generated code")
    from spendgate_semconv.gen_control import stale_files

    assert [] == stale_files(), "run: python -m spendgate_semconv.gen_control"


def test_a_newer_generator_changes_only_the_version_stamps() -> None:
    committed = (gen_control.PACKAGE_DIR / "control_pb2_grpc.py").read_bytes()
    restamped = committed.replace(b"GRPC_GENERATED_VERSION = '", b"GRPC_GENERATED_VERSION = '9")
    assert committed != restamped
    assert gen_control.without_version_stamps(committed) == gen_control.without_version_stamps(restamped)


def test_a_changed_message_is_not_hidden_by_the_stamp_rule() -> None:
    committed = (gen_control.PACKAGE_DIR / "control_pb2.pyi").read_bytes()
    changed = committed.replace(b"resume_version", b"resume_versions")
    assert gen_control.without_version_stamps(committed) != gen_control.without_version_stamps(changed)


def test_the_stamped_runtime_versions_are_within_pyprojects_floors() -> None:
    # The generated code refuses a runtime older than its stamp; pyproject must not promise one.
    project = tomllib.loads((gen_control.INCLUDE_ROOT.parent / "pyproject.toml").read_text())["project"]
    texts = project["dependencies"] + [t for extra in project["optional-dependencies"].values() for t in extra]
    floors = {}
    for req in map(Requirement, texts):
        for spec in req.specifier:
            if spec.operator == ">=":
                floors[req.name] = max(floors.get(req.name, Version("0")), Version(spec.version))
    stamps = gen_control.stamped_versions()
    assert {"grpcio", "protobuf"} == set(stamps)
    for package, stamp in stamps.items():
        assert Version(stamp) <= floors[package], f"{package}: code stamped {stamp}, pyproject allows {floors[package]}"


def test_generated_grpc_module_imports_the_messages_from_the_package() -> None:
    from spendgate_semconv import control_pb2, control_pb2_grpc

    assert "spendgate.control.v1.ControlPlane" == control_pb2.DESCRIPTOR.services_by_name["ControlPlane"].full_name
    assert hasattr(control_pb2_grpc, "ControlPlaneStub")
