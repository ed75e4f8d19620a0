"""`edgec bench --rpc`: a TVM RPC server started on loopback by the test (host target artifact);
the artifact is uploaded, timed and its outputs checked against ONNX Runtime. Bounded in time."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import edgec
from edgec.errors import EdgecError, ToolError
from edgec.targets import rpc
from onnx_util import assert_close, make_model, run_ort


@pytest.fixture(scope="module")
def server():
    from tvm import rpc as tvm_rpc
    srv = tvm_rpc.Server(host="127.0.0.1", port=9190, port_end=9390, silent=True, timeout=60)
    yield f"127.0.0.1:{srv.port}"
    srv.terminate()


def _model():
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((4, 8)).astype(np.float32)}
    inits = {"w": rng.standard_normal((8, 5)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["s"]),
             helper.make_node("Relu", ["s"], ["out"])]
    return make_model(nodes, feeds, ["out"], inits), feeds


def test_bench_over_rpc(server, tmp_path):
    model, feeds = _model()
    art = edgec.compile(model, target="host", output=tmp_path / "art").artifact
    report = rpc.bench(art.path, server, repeat=5, timeout_s=60, feeds=feeds)
    assert len(report.latencies_ms) == 5 and all(t > 0 for t in report.latencies_ms)
    assert report.min_ms <= report.median_ms <= report.max_ms
    text = report.format()
    assert "median" in text and "over 5 runs" in text and server in text
    assert_close(report.outputs, run_ort(model, feeds))


def test_bench_random_inputs(server, tmp_path):
    model, _ = _model()
    art = edgec.compile(model, target="host", output=tmp_path / "art").artifact
    report = rpc.bench(art, server, repeat=2, number=2, timeout_s=60)
    x = rpc.random_inputs(art.inputs)[0]
    assert_close(report.outputs, run_ort(model, {"x": x}))


def test_unreachable_server_is_tool_error(tmp_path):
    model, _ = _model()
    art = edgec.compile(model, target="host", output=tmp_path / "art").artifact
    with pytest.raises(ToolError, match="cannot reach the RPC server at 127.0.0.1:1"):
        rpc.bench(art, "127.0.0.1:1", repeat=1, timeout_s=10)


def test_bad_address():
    with pytest.raises(EdgecError, match="HOST:PORT"):
        rpc.parse_address("localhost")
    assert rpc.parse_address("10.0.0.2:9090") == ("10.0.0.2", 9090)
