"""api.max_concurrent_rpcs: one Inference RPC beyond the limit is refused naming the limit; health still answers."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2

from edged.v1 import inference_pb2 as pb
from tests.daemon_harness import running_daemon

pytestmark = pytest.mark.slow


def test_the_refusal_names_the_limit_and_health_still_answers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with running_daemon(tmp_path_factory.mktemp("limit"), {"api": {"max_concurrent_rpcs": 2}}) as daemon:
        calls = [
            daemon.stub.GenerateStream(
                pb.GenerateRequest(prompt="Write a long essay.", max_tokens=256), timeout=120
            )
            for _ in range(2)
        ]
        for call in calls:
            next(call)  # both are running now
        for attempt in (
            lambda: daemon.stub.Generate(pb.GenerateRequest(prompt="hi", max_tokens=2), timeout=10),
            lambda: list(
                daemon.stub.GenerateStream(pb.GenerateRequest(prompt="hi", max_tokens=2), timeout=10)
            ),
            lambda: daemon.stub.GetStatus(pb.GetStatusRequest(), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as info:
                attempt()
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "api.max_concurrent_rpcs is 2" in (info.value.details() or "")
        assert daemon.health() == health_pb2.HealthCheckResponse.SERVING  # health is not counted
        for call in calls:
            call.cancel()
        daemon.wait_idle()
        assert daemon.stub.Generate(pb.GenerateRequest(prompt="hi", max_tokens=2), timeout=120).text
        assert daemon.daemon._api is not None
        assert daemon.daemon._api.limit.active == 0  # every finished or cancelled RPC gave its place back
