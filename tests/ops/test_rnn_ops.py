"""ONNX LSTM, GRU and RNN against ONNX Runtime: the interpreter over the matrix of cells,
directions, optional inputs, sequence lengths, activations and layouts; host builds of one model
holding many cases per cell; one LSTM built for ARM and run under qemu."""

import tempfile

import numpy as np
import pytest
from onnx import helper

import edgec
from edgec.errors import EdgecError
from edgec.ops.rnn import recurrence_primfunc
from onnx_util import assert_close, make_model, run_ort
from toolchain import needs_arm_run

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
T, B, I, H = 5, 3, 4, 6
DIRECTIONS = ("forward", "reverse", "bidirectional")


def case(op, direction="forward", extras="plain", seed=0, **attrs):
    """(inputs, initializers, input names, attrs) of one node: `extras` "plain" (X, W, R only),
    "states" (B, initial_h, initial_c, P) or "lens" (the states and sequence_lens [5, 2, 4])."""
    rng = np.random.default_rng(seed)
    f = lambda *s: (rng.standard_normal(s) * 0.6).astype(np.float32)  # noqa: E731
    d, g = (2 if direction == "bidirectional" else 1), GATES[op]
    inputs, inits = {"x": f(T, B, I)}, {"w": f(d, g * H, I), "r": f(d, g * H, H)}
    names = ["x", "w", "r"]
    if extras != "plain":
        inits["b"] = f(d, 2 * g * H)
        inputs["h0"] = f(d, B, H)
        names += ["b", "lens" if extras == "lens" else "", "h0"]
        if extras == "lens":
            inputs["lens"] = np.array([5, 2, 4], np.int32)
        if op == "LSTM":
            inputs["c0"] = f(d, B, H)
            inits["p"] = f(d, 3 * H)
            names += ["c0", "p"]
    return inputs, inits, names, {"hidden_size": H, "direction": direction, **attrs}


def outputs_of(op):
    return ["y", "y_h", "y_c"] if op == "LSTM" else ["y", "y_h"]


def model_of(op, cases, outs=None, opset=17):
    """One model with one `op` node per case (each with its own inputs and all its outputs, or
    those named in `outs`, "" for omitted), and its feeds."""
    nodes, feeds, inits, graph_outs = [], {}, {}, []
    for i, (inputs, initializers, names, attrs) in enumerate(cases):
        feeds.update({f"{n}{i}": a for n, a in inputs.items()})
        inits.update({f"{n}{i}": a for n, a in initializers.items()})
        outs_i = [f"{o}{i}" if o else "" for o in (outs or outputs_of(op))]
        nodes.append(helper.make_node(op, [f"{n}{i}" if n else "" for n in names], outs_i, name=f"{op}{i}", **attrs))
        graph_outs += [o for o in outs_i if o]
    return make_model(nodes, feeds, graph_outs, inits, opset), feeds


def check_interpreter(model, feeds, expected=None):
    expected = expected if expected is not None else run_ort(model, feeds)
    assert_close(edgec.interpret(edgec.import_onnx(model), feeds), expected, what="interpreter")
    return expected


def check_host(model, feeds, level=2):
    expected = run_ort(model, feeds)
    with tempfile.TemporaryDirectory() as d:
        art = edgec.compile(model, target="host", output=f"{d}/out", level=level).artifact
        assert_close(art.run(feeds), expected, what="compiled")
        return art


MATRIX = [(op, direction, extras) for op in GATES for direction in DIRECTIONS for extras in ("plain", "states", "lens")]


@pytest.mark.parametrize("op,direction,extras", MATRIX, ids=["-".join(c) for c in MATRIX])
def test_interpreter_matches_ort(op, direction, extras):
    check_interpreter(*model_of(op, [case(op, direction, extras)]))


# Activations (the gates' f first: bounded, but for one case, so that the states do not blow up),
# with the alphas and betas ONNX consumes in order (only the activations that take one).
ACTIVATIONS = {
    "LSTM": [["HardSigmoid", "Relu", "Tanh"], ["Sigmoid", "LeakyRelu", "Affine"], ["Sigmoid", "Softsign", "Elu"],
             ["HardSigmoid", "Tanh", "ScaledTanh"], ["Sigmoid", "Softplus", "ThresholdedRelu"], ["Relu", "Tanh", "Tanh"]],
    "GRU": [["HardSigmoid", "Relu"], ["HardSigmoid", "LeakyRelu"], ["Sigmoid", "Affine"], ["Sigmoid", "Softsign"],
            ["Sigmoid", "Elu"], ["HardSigmoid", "ScaledTanh"], ["Sigmoid", "ThresholdedRelu"], ["Sigmoid", "Softplus"],
            ["Relu", "Tanh"]],
    "RNN": [["Relu"], ["Sigmoid"], ["LeakyRelu"], ["Affine"], ["Softsign"], ["Softplus"], ["ScaledTanh"],
            ["HardSigmoid"], ["Elu"], ["ThresholdedRelu"]],
}
TAKES = {"Affine": 2, "LeakyRelu": 1, "ThresholdedRelu": 1, "ScaledTanh": 2, "HardSigmoid": 2, "Elu": 1}


def activation_cases(op):
    """Each set of ACTIVATIONS, with given alphas and betas and with the defaults; bidirectional
    with the next set for the second direction; clip; input_forget; linear_before_reset."""
    cases, sets = [], ACTIVATIONS[op]
    for k, acts in enumerate(sets):
        alphas = [0.3 + 0.1 * j for j, a in enumerate(acts) if TAKES.get(a, 0) >= 1]
        betas = [0.2 + 0.1 * j for j, a in enumerate(acts) if TAKES.get(a, 0) == 2]
        given = {name: v for name, v in (("activation_alpha", alphas), ("activation_beta", betas)) if v and k % 2 == 0}
        cases.append(case(op, "forward", "states", seed=k, activations=acts, **given))
        cases.append(case(op, "bidirectional", "lens", seed=k, activations=acts + sets[(k + 1) % len(sets)]))
    cases.append(case(op, "bidirectional", "states", clip=0.5))
    if op == "LSTM":
        cases.append(case(op, "reverse", "lens", input_forget=1))
    if op == "GRU":
        cases += [case(op, d, "lens", linear_before_reset=1) for d in DIRECTIONS]
    return cases


@pytest.mark.parametrize("op", GATES)
def test_activations_clip_and_cell_options_match_ort(op):
    check_interpreter(*model_of(op, activation_cases(op)))


@pytest.mark.parametrize("op", GATES)
def test_host_build_matches_ort(op):
    """Each direction with every optional input and sequence lengths, the plain case, each
    activation set (a different one per direction), clip and the cell's option, in one model:
    one build."""
    sets = ACTIVATIONS[op]
    cases = [case(op, d, "lens", seed=i) for i, d in enumerate(DIRECTIONS)] + [case(op, "forward", "plain")]
    cases += [case(op, "bidirectional", "states", seed=k, activations=sets[k] + sets[k + 1])
              for k in range(0, len(sets) - 1, 2)]
    cases.append(case(op, "bidirectional", "lens", clip=0.5, **{"LSTM": {"input_forget": 1}, "GRU": {
        "linear_before_reset": 1}, "RNN": {}}[op]))
    check_host(*model_of(op, cases))


def test_host_build_at_O0_runs_weight_transforms_as_nodes():
    """W and R from graph inputs: their reshape, transpose and bias sum are nodes, not constants."""
    inputs, inits, names, attrs = case("LSTM", "bidirectional", "lens")
    model, feeds = model_of("LSTM", [({**inputs, **inits}, {}, names, attrs)])
    check_host(model, feeds, level=0)


@pytest.mark.parametrize("op", GATES)
def test_layout_1_is_layout_0_batch_first(op):
    """ONNX Runtime has no layout=1: the same node in layout 0, its inputs and outputs transposed."""
    inputs, inits, names, attrs = case(op, "bidirectional", "lens")
    model0, feeds0 = model_of(op, [(inputs, inits, names, attrs)], opset=14)
    expected = run_ort(model0, feeds0)
    batch_first = {k: v.transpose(1, 0, 2) if k in ("x", "h0", "c0") else v for k, v in inputs.items()}
    model1, feeds1 = model_of(op, [(batch_first, inits, names, {**attrs, "layout": 1})], opset=14)
    want = {"y0": expected["y0"].transpose(2, 0, 1, 3)}
    want.update({k: expected[k].transpose(1, 0, 2) for k in expected if k != "y0"})
    check_interpreter(model1, feeds1, want)
    with tempfile.TemporaryDirectory() as d:
        art = edgec.compile(model1, target="host", output=f"{d}/out").artifact
        assert_close(art.run(feeds1), want, what="compiled")


@pytest.mark.parametrize("outs", [["", "y_h"], ["y", ""], ["", "", "y_c"], ["", "y_h", "y_c"]],
                         ids=["y_h", "y", "y_c", "y_h-y_c"])
def test_outputs_may_be_omitted(outs):
    model, feeds = model_of("LSTM", [case("LSTM", "bidirectional", "lens")], outs=outs)
    check_interpreter(model, feeds)


@pytest.mark.parametrize("opset", [7, 14, 22])
def test_opsets(opset):
    model, feeds = model_of("GRU", [case("GRU", "reverse", "lens")], opset=opset)
    check_interpreter(model, feeds)


def test_one_recurrence_kernel_per_layer_and_the_text_ir_round_trips():
    model, _ = model_of("LSTM", [case("LSTM", "bidirectional", "lens")])
    graph = edgec.optimize(edgec.import_onnx(model), target="host", level=2)
    ops = [n.op for n in graph.nodes]
    assert ops.count("recurrence") == 1 and ops.count("dense") == 1, ops
    text = str(graph)
    assert 'cell="lstm"' in text and 'direction="bidirectional"' in text
    assert str(edgec.parse_ir(text)) == text


def test_the_kernel_is_a_loop_over_time_with_no_schedule_rule():
    """The recurrence's PrimFunc comes scheduled: a serial time loop, vectorized inner loops;
    the manifest names it 'prescheduled'."""
    attrs = {"cell": "lstm", "direction": "forward", "activations": "sigmoid,tanh,tanh",
             "activation_alpha": [0.0] * 3, "activation_beta": [0.0] * 3, "clip": 0.0, "input_forget": 0,
             "linear_before_reset": 0}
    text = recurrence_primfunc(attrs, 7, 1, 16, 8).script()
    assert "for d, s, b in T.grid(1, 7, 1)" in text and "T.vectorized(32)" in text, text
    with tempfile.TemporaryDirectory() as d:
        model, feeds = model_of("LSTM", [case("LSTM")])
        art = edgec.compile(model, target="host", output=f"{d}/out").artifact
        rules = {k["op"]: k["schedule"] for k in art.manifest["kernels"]}
    assert rules["recurrence"] == "prescheduled" and rules["dense"] == "tiled_reduction", rules


@pytest.mark.parametrize("attrs,message", [
    ({"activations": ["Sigmoid", "Gelu", "Tanh"]}, "activation 'gelu' is not supported"),
    ({"activations": ["Sigmoid", "Tanh"]}, "has 2 activations; a forward LSTM takes 3"),
    ({"direction": "sideways"}, "direction must be one of"),
])
def test_bad_attributes_are_refused_by_name(attrs, message):
    inputs, inits, names, base = case("LSTM")
    model = make_model([helper.make_node("LSTM", names, ["y"], name="lstm", **{**base, **attrs})], inputs, ["y"],
                       inits)
    with pytest.raises(EdgecError, match=message) as info:
        edgec.import_onnx(model)
    assert "'lstm'" in str(info.value)


@needs_arm_run
def test_lstm_on_arm_under_qemu():
    from edgec.verify import verify_model
    inputs, inits, names, attrs = case("LSTM", "bidirectional", "lens")
    inits["lens"] = inputs.pop("lens")  # verify draws random inputs: the lengths are a constant
    model, _ = model_of("LSTM", [(inputs, inits, names, attrs)])
    report = verify_model(model, target="arm-a72", level=2)
    assert report.ok, report.format()


@pytest.mark.parametrize("direction,per_column", [("forward", True), ("bidirectional", False)])
def test_dynamic_quantize_lstm_is_the_float_lstm_of_its_dequantized_weights(direction, per_column):
    """com.microsoft.DynamicQuantizeLSTM: uint8 W and R with a zero point. ONNX Runtime also
    quantizes X and h to uint8 at run time: edgec (float) is within 2e-2 of its outputs' scale."""
    inputs, inits, names, attrs = case("LSTM", direction, "lens", seed=3)
    d = 2 if direction == "bidirectional" else 1
    w, r = inits.pop("w").transpose(0, 2, 1), inits.pop("r").transpose(0, 2, 1)  # [D, K, 4H]
    axes = (1,) if per_column else (1, 2)
    expand = (lambda v: v[:, None, :]) if per_column else (lambda v: v[:, None, None])  # noqa: E731
    for name, v in (("w", w), ("r", r)):  # uint8, one zero point (ONNX Runtime asks for one)
        scale = (np.abs(v).max(axis=axes) / 127).astype(np.float32)
        zero = np.full(scale.shape, 128 if name == "w" else 120, np.uint8)
        inits.update({f"{name}q": np.clip(np.round(v / expand(scale)) + expand(zero), 0, 255).astype(np.uint8),
                      f"{name}s": scale, f"{name}z": zero})
    names = ["x", "wq", "rq", *names[3:], "ws", "wz", "rs", "rz"]
    node = helper.make_node("DynamicQuantizeLSTM", names, ["y", "y_h", "y_c"], domain="com.microsoft", **attrs)
    model = make_model([node], inputs, ["y", "y_h", "y_c"], inits)
    expected = run_ort(model, inputs)
    assert expected["y"].shape == (T, d, B, H)
    assert_close(edgec.interpret(edgec.import_onnx(model), inputs), expected, rtol=0, atol=2e-2, what="interpreter")
    with tempfile.TemporaryDirectory() as tmp:
        art = edgec.compile(model, target="host", output=f"{tmp}/out").artifact
        assert_close(art.run(inputs), expected, rtol=0, atol=2e-2, what="compiled")


def test_sequence_lengths_of_zero_and_past_the_end():
    """A length of 0 gives zeros, also for Y_h and Y_c (as ONNX Runtime); one over T counts as T
    (ONNX Runtime refuses it): the compiled kernel reads and writes nothing out of bounds."""
    inputs, inits, names, attrs = case("LSTM", "bidirectional", "lens")
    inputs["lens"] = np.array([0, 3, 5], np.int32)
    model, feeds = model_of("LSTM", [(inputs, inits, names, attrs)])
    expected = check_interpreter(model, feeds)
    assert not np.any(expected["y0"][:, :, 0]) and not np.any(expected["y_h0"][:, 0]) and np.any(inputs["h0"][:, 0])
    with tempfile.TemporaryDirectory() as d:
        art = edgec.compile(model, target="host", output=f"{d}/out").artifact
        assert_close(art.run(feeds), expected, what="compiled")
        longer = {**feeds, "lens0": np.array([0, 3, 1000], np.int32)}
        assert_close(art.run(longer), art.run(feeds), what="length 1000 as 5")
    assert_close(edgec.interpret(edgec.import_onnx(model), longer), expected, what="interpreter, length 1000")
