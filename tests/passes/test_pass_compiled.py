"""The compiled host module agrees with the interpreter on random graphs, optimized at a random
level (so fused, recognized and layout-converted nodes are lowered too). Each example builds a
TVM module; the number of examples is the profile's (ci: 25, thorough: 500)."""

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import tvm
from tvm import relax

import edgec
from edgec.targets import get_target, level_pipelines
from edgec.targets.build import build_graph

from onnx_util import assert_close
from edgec.testing import graph_and_inputs

EXAMPLES = settings().max_examples


def run_compiled(graph, feeds):
    built = build_graph(graph, get_target("host"))
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(feeds[v.name]) for v in graph.inputs])
    return {name: np.asarray(r.numpy()) for name, r in zip(graph.output_names, result)}


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=graph_and_inputs(max_steps=5), pipeline=st.sampled_from(
    ["", level_pipelines("NCHW")[2], level_pipelines("NHWC")[3]]))
def test_compiled_module_matches_interpreter(data, pipeline):
    graph, feeds, expected = data
    optimized = edgec.optimize(graph, passes=pipeline) if pipeline else graph
    assert_close(run_compiled(optimized, feeds), expected, rtol=1e-4, atol=1e-4, what=pipeline or "-O0")
