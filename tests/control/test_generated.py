"""The committed control-plane code is what ``control.proto`` generates today."""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import pytest


def test_committed_generated_code_matches_the_proto() -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools is a dev dependency; install it to check the generated code")
    from spendgate_semconv.gen_control import stale_files

    assert [] == stale_files(), "run: python -m spendgate_semconv.gen_control"


def test_generated_grpc_module_imports_the_messages_from_the_package() -> None:
    from spendgate_semconv import control_pb2, control_pb2_grpc

    assert "spendgate.control.v1.ControlPlane" == control_pb2.DESCRIPTOR.services_by_name["ControlPlane"].full_name
    assert hasattr(control_pb2_grpc, "ControlPlaneStub")
