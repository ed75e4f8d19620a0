"""Shared test helpers: build one-node ONNX models (and one quantized CNN chain) and check edgec
against ONNX Runtime."""

from __future__ import annotations

import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgec

NP_TO_ONNX = {np.dtype(k): v for k, v in {
    "float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "float64": TensorProto.DOUBLE,
    "int64": TensorProto.INT64, "int32": TensorProto.INT32, "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8, "bool": TensorProto.BOOL, "int16": TensorProto.INT16,
    "uint16": TensorProto.UINT16, "uint32": TensorProto.UINT32, "uint64": TensorProto.UINT64}.items()}


def make_model(nodes, inputs: dict[str, np.ndarray], outputs: list[str], initializers: dict | None = None,
               opset: int = 17) -> onnx.ModelProto:
    """A model whose inputs take the shapes and dtypes of the given arrays; output types are inferred
    (those of ops of other domains, which ONNX does not know, are left undeclared). Each other domain
    that the nodes use (com.microsoft) is imported at version 1."""
    ins = [helper.make_tensor_value_info(n, NP_TO_ONNX[a.dtype], a.shape) for n, a in inputs.items()]
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in (initializers or {}).items()]
    graph = helper.make_graph(nodes, "test", ins, [], inits)
    domains = sorted({n.domain for n in nodes} - {"", "ai.onnx"})
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]
                              + [helper.make_opsetid(d, 1) for d in domains])
    model.ir_version = 8
    # Output types come from ONNX shape inference, so tests never restate them.
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in inferred.graph.value_info}
    for n in outputs:
        model.graph.output.append(known[n] if n in known else onnx.ValueInfoProto(name=n))
    return model


def node_model(op_type: str, inputs: dict[str, np.ndarray], initializers: dict | None = None,
               n_outputs: int = 1, opset: int = 17, input_names: list[str] | None = None,
               output_names: list[str] | None = None, **attrs):
    """A one-node model; `input_names` orders the node's inputs (defaults: inputs then initializers,
    "" for an omitted optional input); `output_names` names its outputs (default: n_outputs of
    them, out0, out1, ...; "" for an omitted one). op_type may name a domain
    ("com.microsoft.FusedConv"); the node is named `<op_type>_node` (without the domain)."""
    names = input_names if input_names is not None else [*inputs, *(initializers or {})]
    outs = output_names if output_names is not None else [f"out{i}" for i in range(n_outputs)]
    domain, _, op_type = op_type.rpartition(".")
    node = helper.make_node(op_type, names, outs, name=f"{op_type}_node", domain=domain or None, **attrs)
    return make_model([node], inputs, [o for o in outs if o], initializers, opset)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ONNX Runtime on `model`: the session `edgec verify` compares with (exact for u8 x s8)."""
    from edgec.verify import onnxruntime_session
    sess = onnxruntime_session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def assert_close(actual: dict, expected: dict, rtol: float = 1e-4, atol: float = 1e-5, what: str = "") -> None:
    assert set(actual) == set(expected), (what, set(actual), set(expected))
    for name in expected:
        a, e = np.asarray(actual[name]), np.asarray(expected[name])
        assert a.shape == e.shape, f"{what} {name}: shape {a.shape} != {e.shape}"
        if e.dtype.kind in "fc":
            finite = np.abs(e[np.isfinite(e)])  # an inf or nan in `e` must not widen the tolerance to inf
            scale = max(1.0, float(np.max(finite))) if finite.size else 1.0
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * scale, err_msg=f"{what} {name}")
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"{what} {name}")


def check_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float = 1e-4,
                atol: float = 1e-5, compiled: bool = True, level: int = 0) -> dict[str, np.ndarray]:
    """ORT on the model vs edgec's interpreter, and (if `compiled`) vs the host-compiled module."""
    expected = run_ort(model, feeds)
    graph = edgec.import_onnx(model)
    assert_close(edgec.interpret(graph, feeds), expected, rtol, atol, "interpreter")
    if compiled:
        with tempfile.TemporaryDirectory() as d:
            art = edgec.compile(model, target="host", output=f"{d}/out", level=level).artifact
            assert_close(art.run(feeds), expected, rtol, atol, "compiled")
    return expected


def multi_node_model(cases, opset: int = 17):
    """One model holding one ONNX node per case, so that one compile checks many ops.

    A case is (op_type, inputs, initializers, attrs) or (op_type, inputs, initializers, attrs,
    input_names) with input_names over the keys of inputs/initializers ("" for an omitted input);
    op_type may name a domain ("com.microsoft.QLinearAdd"). Names are made unique per case; outputs
    are named `<op_type>_<case index>` (without the domain), so a mismatch names the case.
    Returns (model, feeds)."""
    nodes, feeds, inits, outs = [], {}, {}, []
    for i, case in enumerate(cases):
        op_type, inputs, initializers, attrs = case[:4]
        names = case[4] if len(case) > 4 else [*inputs, *initializers]
        for n, a in inputs.items():
            feeds[f"{n}_{i}"] = a
        for n, a in initializers.items():
            inits[f"{n}_{i}"] = a
        domain, _, op_type = op_type.rpartition(".")
        out = f"{op_type}_{i}"
        nodes.append(helper.make_node(op_type, [f"{n}_{i}" if n else "" for n in names], [out],
                                      name=f"{op_type}_node{i}", domain=domain or None, **attrs))
        outs.append(out)
    return make_model(nodes, feeds, outs, inits, opset), feeds


def qlinear_conv_chain(seed: int = 0, size: int = 10, c: int = 8):
    """A quantized CNN chain: f32 x[1,c,size,size] -> QuantizeLinear (u8) -> QLinearConv 3x3 pad 1
    (c -> 2c, int32 bias) -> QLinearConv 3x3 stride 2 pad 1 (2c -> 2c, weight zero point 3) ->
    MaxPool 3x3 pad 1 (u8) -> depthwise QLinearConv 3x3 pad 1 (group 2c) -> QLinearConv 1x1
    (2c -> c) -> DequantizeLinear -> y f32[1,c,size/2,size/2]. u8 activations, i8 weights with
    per-channel scales. Returns (model, feeds)."""
    rng = np.random.default_rng(seed)
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    feeds = {"x": rng.standard_normal((1, c, size, size)).astype(np.float32)}
    inits = {"s0": f32(0.03), "z0": np.array(128, np.uint8)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s0", "z0"], ["q0"])]
    # (out channels, in channels per group, kernel, weight zero point, bias, attrs)
    layers = [(2 * c, c, 3, 0, True, {"pads": [1, 1, 1, 1]}),
              (2 * c, 2 * c, 3, 3, False, {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
              (2 * c, 1, 3, 0, True, {"pads": [1, 1, 1, 1], "group": 2 * c}),
              (c, 2 * c, 1, 0, True, {})]
    x, x_scale = "q0", 0.03
    for i, (out_ch, cin, k, wzp, bias, attrs) in enumerate(layers, start=1):
        if i == 3:
            nodes.append(helper.make_node("MaxPool", [x], ["pool"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            x = "pool"
        w_scale = rng.uniform(0.005, 0.01, out_ch).astype(np.float32)
        y_scale = x_scale * float(w_scale.mean()) * np.sqrt(cin * k * k) * 60  # outputs spread over ~ +-40
        y_zp = int(rng.integers(100, 156))
        inits.update({f"w{i}": rng.integers(-127, 128, (out_ch, cin, k, k)).astype(np.int8), f"ws{i}": w_scale,
                      f"wz{i}": np.full(out_ch, wzp, np.int8), f"ys{i}": f32(y_scale),
                      f"yz{i}": np.array(y_zp, np.uint8)})
        names = [x, "s0" if i == 1 else f"ys{i - 1}", "z0" if i == 1 else f"yz{i - 1}", f"w{i}", f"ws{i}", f"wz{i}",
                 f"ys{i}", f"yz{i}"]
        if bias:
            inits[f"b{i}"] = rng.integers(-3000, 3000, out_ch).astype(np.int32)
            names.append(f"b{i}")
        nodes.append(helper.make_node("QLinearConv", names, [f"c{i}"], name=f"conv{i}", **attrs))
        x, x_scale = f"c{i}", y_scale
    nodes.append(helper.make_node("DequantizeLinear", [x, f"ys{len(layers)}", f"yz{len(layers)}"], ["y"]))
    return make_model(nodes, feeds, ["y"], inits, opset=13), feeds
