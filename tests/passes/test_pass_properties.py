"""The property every pass keeps, on random well-typed graphs (edgec.testing):

- for every registered pass (and option variants) and every level's pipeline of every target:
  the interpreter's outputs on the optimized graph equal those on the original (fp32 tolerance
  scaled to the output), the verifier accepts the result, origins only come from the original
  nodes, and a pass that reports no change leaves the printed text unchanged;
- running a pass a second time changes nothing (each reaches its fixed point in one run);
- convert-layout never leaves more transposes than the graph had plus the ones it inserted.
"""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import edgec
from edgec.passmanager import PASSES, PassManager, get_pass, parse_pipeline, resolve_pipeline
from edgec.targets import PRECISIONS, all_target_names, get_target

from onnx_util import assert_close
import edgec.testing as S
from edgec.testing import graph_and_inputs

get_pass("dce")  # loads the built-in passes
# The built-in passes (other tests register deliberately broken ones of their own).
BUILTIN = sorted(name for name, cls in PASSES.items() if cls.__module__.startswith("edgec.passes."))
VARIANTS = {"convert-layout": ["convert-layout{to=NHWC}", "convert-layout{to=NCHW}"],
            "fold-constants": ["fold-constants", "fold-constants{max-size=4}"]}
# convert-precision changes the arithmetic: its property (fp16 tolerance) is in test_pass_precision.py.
PRECISION = {"convert-precision"}
PASS_SPECS = [spec for name in BUILTIN if name not in PRECISION for spec in VARIANTS.get(name, [name])]
PIPELINES = sorted({get_target(t).pipeline(level) for t in all_target_names() for level in range(4)} - {""})
PRECISION_PIPELINES = sorted({resolve_pipeline(t, level, precision=p) for t in all_target_names()
                              if get_target(t).fp16 for level in range(4) for p in PRECISIONS})
# The graphs each pass's property draws: (families, motifs drawn more often), so that every pass
# applies in a good share of the examples, not only in the rare graph that has its pattern.
LINEAR = ["cnn", "mlp"]
FOCUS = {
    "cse": (None, (S.gen_duplicate,)),
    "eliminate-noop": (None, (S.gen_noop,)),
    "fold-constants": (None, (S.gen_constant_subgraph,)),
    "simplify-shapes": (None, (S.gen_transpose_pair, S.gen_reshape_pair)),
    "recognize-gelu": (None, (S.gen_gelu,)),
    "recognize-silu": (None, (S.gen_silu,)),
    "recognize-hardswish": (None, (S.gen_hardswish,)),
    "recognize-layernorm": (None, (S.gen_layernorm,)),
    "fuse-pad": ("cnn", (S.gen_padded_conv,)),
    "fuse-conv-bn": (LINEAR, (S.gen_conv, S.gen_linear)),
    "fuse-bias": (LINEAR, (S.gen_conv, S.gen_linear)),
    "fuse-activation": (LINEAR, (S.gen_conv, S.gen_linear)),
    "fuse-matmul-add": ("mlp", (S.gen_linear,)),
    "fuse-epilogue": (LINEAR, (S.gen_conv, S.gen_linear)),
    "convert-layout": ("cnn", (S.gen_conv, S.gen_pool, S.gen_transpose_pair)),
}
RELAXED = settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])


def origins(graph):
    return {o for n in graph.nodes for o in n.origin}


def make_pass(spec):
    (name, opts), = parse_pipeline(spec)
    return get_pass(name)(**opts)


@pytest.mark.parametrize("spec", PASS_SPECS)
@RELAXED
@given(data=st.data())
def test_every_pass_keeps_outputs(spec, data):
    family, focus = FOCUS.get(spec.split("{")[0], (None, ()))
    graph, feeds, expected = data.draw(graph_and_inputs(family, focus=focus))
    printed = str(graph)
    work = graph.copy()
    p = make_pass(spec)
    changed = p.run(work)
    assert isinstance(changed, bool)
    edgec.verify_ir(work)
    if not changed:
        assert str(work) == printed, f"{spec} returned False but changed the graph"
    assert origins(work) <= origins(graph)
    assert_close(edgec.interpret(work, feeds), expected, what=spec)
    again = make_pass(spec)
    text = str(work)
    assert again.run(work) is False and str(work) == text, f"{spec} did not reach its fixed point in one run"
    if spec.startswith("convert-layout") and changed:
        assert p.stats["transposes-removed"] >= 0


@pytest.mark.parametrize("pipeline", PIPELINES)
@RELAXED
@given(data=graph_and_inputs())
def test_every_level_pipeline_keeps_outputs(pipeline, data):
    graph, feeds, expected = data
    optimized = PassManager(pipeline).run(graph.copy())  # verifies after every pass
    assert origins(optimized) <= origins(graph)
    assert_close(edgec.interpret(optimized, feeds), expected, what=pipeline)


def test_the_pipelines_cover_every_pass():
    used = {name for p in PIPELINES + PRECISION_PIPELINES for name, _ in parse_pipeline(p)}
    assert used == set(BUILTIN)


def test_every_pass_documents_its_cases():
    import inspect
    for name in BUILTIN:
        cls = PASSES[name]
        doc = inspect.getmodule(cls).__doc__ or ""
        assert f"{name}" in doc and cls.summary, f"pass {name} lacks a docstring listing its cases"
