"""Attention, RotaryEmbedding and ONNX Runtime's com.microsoft Attention / MultiHeadAttention
(decomposed at import, edgec.ops.attention) against ONNX Runtime: the interpreter and a host build;
one case at -O2, where fuse-epilogue takes the scale into the score matmul."""

import numpy as np
import pytest
from onnx import helper

import edgec
from edgec.errors import EdgecError
from onnx_util import check_model, make_model

rng = np.random.default_rng(0)
MS = "com.microsoft"


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def attention_model(cases, opset):
    """One model of several Attention nodes: (inputs by name, node input names, output count,
    attrs) per case; outputs are named after the case."""
    nodes, feeds, outs = [], {}, []
    for i, (inputs, names, n_out, attrs) in enumerate(cases):
        feeds.update({f"{n}{i}": a for n, a in inputs.items()})
        out = [f"y{i}_{j}" if j in n_out else "" for j in range(max(n_out) + 1)]
        nodes.append(helper.make_node("Attention", [f"{n}{i}" if n else "" for n in names], out,
                                      name=f"attention{i}", **attrs))
        outs += [o for o in out if o]
    return make_model(nodes, feeds, outs, opset=opset), feeds


def test_attention_opset23():
    """3-D with grouped heads, a float mask and a cache; 4-D causal with a bool mask, softcap,
    scale and each qk_matmul_output_mode; a fully masked row."""
    q3, k3, v3 = randn(2, 3, 24), randn(2, 4, 8), randn(2, 4, 12)
    past_k, past_v = randn(2, 2, 2, 4), randn(2, 2, 2, 6)
    bool_mask = rng.random((2, 1, 3, 5)) > 0.3
    bool_mask[..., 0] = True
    fully = np.ones((3, 5), bool)
    fully[1] = False
    q4, k4, v4 = randn(2, 4, 3, 6), randn(2, 4, 5, 6), randn(2, 4, 5, 7)
    cases = [
        ({"q": q3, "k": k3, "v": v3, "m": randn(3, 6), "pk": past_k, "pv": past_v}, ["q", "k", "v", "m", "pk", "pv"],
         [0, 1, 2], {"q_num_heads": 6, "kv_num_heads": 2}),
        ({"q": q4, "k": k4, "v": v4, "m": bool_mask}, ["q", "k", "v", "m"], [0, 3],
         {"is_causal": 1, "softcap": 1.5, "scale": 0.3, "qk_matmul_output_mode": 1}),
        ({"q": q4, "k": k4, "v": v4, "m": randn(1, 4, 3, 5)}, ["q", "k", "v", "m"], [0, 3], {"qk_matmul_output_mode": 2}),
        ({"q": q4, "k": k4, "v": v4, "m": fully}, ["q", "k", "v", "m"], [0, 3], {"qk_matmul_output_mode": 3}),
        ({"q": q4, "k": k4, "v": v4}, ["q", "k", "v"], [0, 3], {"is_causal": 1}),
    ]
    model, feeds = attention_model(cases, 23)
    out = check_model(model, feeds)
    assert np.all(out["y3_0"][:, :, 1] == 0)  # the fully masked row is zero, not NaN


def test_attention_short_mask():
    """A mask with fewer columns than keys is extended with masked ones (ONNX Runtime refuses such
    a mask; the ONNX reference implementation is the reference here)."""
    from onnx.reference import ReferenceEvaluator
    feeds = {"q": randn(1, 2, 3, 4), "k": randn(1, 2, 5, 4), "v": randn(1, 2, 5, 4), "m": rng.random((3, 3)) > 0.2}
    node = helper.make_node("Attention", list(feeds), ["y"])
    model = make_model([node], feeds, ["y"], opset=23)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    actual = edgec.interpret(edgec.import_onnx(model), feeds)["y"]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_attention_nonpad_kv_seqlen():
    """Opset 24: keys from nonpad_kv_seqlen[b] on are masked; causal from nonpad - Sq."""
    q, k, v = randn(2, 4, 2, 8), randn(2, 2, 6, 8), randn(2, 2, 6, 8)
    n = np.array([3, 6], np.int64)
    cases = [({"q": q, "k": k, "v": v, "n": n}, ["q", "k", "v", "", "", "", "n"], [0], {"is_causal": 1}),
             ({"q": q, "k": k, "v": v, "n": n}, ["q", "k", "v", "", "", "", "n"], [0], {})]
    check_model(*attention_model(cases, 24))


def test_attention_float16():
    q, k, v = (randn(1, 2, 4, 8).astype(np.float16) for _ in range(3))
    cases = [({"q": q, "k": k, "v": v}, ["q", "k", "v"], [0], {"is_causal": 1, "softmax_precision": 1})]
    check_model(*attention_model(cases, 23), rtol=2e-3, atol=2e-3)


def test_attention_O2_fuses_the_scale():
    """At -O2 the scale after the score matmul becomes its epilogue, and the result still matches."""
    q, k, v, m = randn(1, 4, 8, 16), randn(1, 4, 8, 16), randn(1, 4, 8, 16), randn(8, 8)
    model, feeds = attention_model([({"q": q, "k": k, "v": v, "m": m}, ["q", "k", "v", "m"], [0], {})], 23)
    check_model(model, feeds, level=2)
    graph = edgec.optimize(edgec.import_onnx(model), level=2)
    fused = [n for n in graph.nodes if n.op == "fused"]
    assert any("matmul" in n.attrs["body"] and "mul" in n.attrs["body"] for n in fused), graph


ROTARY_CASES = [
    # (name, x shape, attrs, with position_ids)
    ("4d", (2, 3, 5, 8), {}, True),
    ("4d_interleaved_no_positions", (2, 3, 5, 8), {"interleaved": 1}, False),
    ("3d_partial_interleaved", (2, 5, 24), {"num_heads": 3, "rotary_embedding_dim": 4, "interleaved": 1}, True),
    ("3d_partial", (2, 5, 24), {"num_heads": 2, "rotary_embedding_dim": 6}, False),
]


@pytest.mark.parametrize("name,shape,attrs,positions", ROTARY_CASES, ids=[c[0] for c in ROTARY_CASES])
def test_rotary_embedding(name, shape, attrs, positions):
    x = randn(*shape)
    seq = shape[2] if len(shape) == 4 else shape[1]
    heads = attrs.get("num_heads", shape[1])
    half = attrs.get("rotary_embedding_dim", shape[-1] // (1 if len(shape) == 4 else heads)) // 2
    rows = (10,) if positions else (shape[0], seq)
    feeds = {"x": x, "cos": randn(*rows, half), "sin": randn(*rows, half)}
    if positions:
        feeds["pos"] = rng.integers(0, 10, (shape[0], seq)).astype(np.int64)
    node = helper.make_node("RotaryEmbedding", list(feeds), ["y"], **attrs)
    check_model(make_model([node], feeds, ["y"], opset=23), feeds)


def test_ms_attention():
    """Packed constant weights and bias: a 2-D key padding mask with unidirectional (a row whose
    first key is padding), 1-D key lengths with a scale, no mask; weights as an input."""
    x, w, b = randn(2, 5, 12), randn(12, 36), randn(36)
    mask2d = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], np.int32)
    lengths = np.array([3, 5], np.int32)
    nodes = [helper.make_node("Attention", ["x", "w", "b", "m2"], ["y0", "present"], domain=MS, num_heads=3,
                              unidirectional=1),
             helper.make_node("Attention", ["x", "w", "b", "m1"], ["y1"], domain=MS, num_heads=2, scale=0.2),
             helper.make_node("Attention", ["x", "w"], ["y2"], domain=MS, num_heads=4,
                              qkv_hidden_sizes=[8, 8, 20]),
             helper.make_node("Attention", ["x", "wi", "b"], ["y3"], domain=MS, num_heads=3)]
    feeds = {"x": x, "m2": mask2d, "m1": lengths, "wi": randn(12, 36)}
    check_model(make_model(nodes, feeds, ["y0", "present", "y1", "y2", "y3"], {"w": w, "b": b}), feeds)


def test_ms_multi_head_attention():
    q, k, v = randn(2, 4, 12), randn(2, 6, 12), randn(2, 6, 18)
    nodes = [helper.make_node("MultiHeadAttention", ["q", "k", "v", "bias", "kpm"], ["y0", "pk", "pv"], domain=MS,
                              num_heads=3),
             helper.make_node("MultiHeadAttention", ["q", "q", "q", "", "len"], ["y1"], domain=MS, num_heads=2,
                              unidirectional=1, scale=0.5)]
    feeds = {"q": q, "k": k, "v": v, "kpm": np.array([[1, 1, 1, 1, 0, 0], [1] * 6], np.int32),
             "len": np.array([2, 4], np.int32)}
    check_model(make_model(nodes, feeds, ["y0", "pk", "pv", "y1"], {"bias": randn(42)}), feeds)


@pytest.mark.parametrize("op,inputs,attrs,message", [
    ("Attention", ["x", "w"], {"num_heads": 2, "do_rotary": 1}, "attribute do_rotary=1 is not supported"),
    ("Attention", ["x", "w", "", "", "x"], {"num_heads": 2}, "input 'past' is not supported"),
    ("MultiHeadAttention", ["x", "x", "x", "", "", "", "x"], {"num_heads": 2}, "input 'past_key' is not supported"),
    ("MultiHeadAttention", ["x"], {"num_heads": 2}, "only separate 3-D query, key and value"),
], ids=["do_rotary", "past", "mha_past_key", "mha_packed"])
def test_ms_unsupported(op, inputs, attrs, message):
    node = helper.make_node(op, inputs, ["y"], name="att", domain=MS, **attrs)
    model = make_model([node], {"x": randn(1, 3, 4)}, ["y"], {"w": randn(4, 12)})
    with pytest.raises(EdgecError, match=f"'att' \\({op}\\): {message}"):
        edgec.import_onnx(model)
