"""The benchmark models of tools/make_models.py, end to end against ONNX Runtime.

Small versions (same architecture, reduced sizes) at -O0 and -O2 on the host: the interpreter and
the compiled module must match ONNX Runtime within 1e-4 of each output's scale. The full-size
ResNet-18-like model is verified once at -O2.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_models  # noqa: E402

from edgec.verify import bisect, verify_model  # noqa: E402


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    return make_models.build_all(tmp_path_factory.mktemp("models"), small=True)


def test_build_all_writes_checked_models(small_models):
    assert sorted(small_models) == sorted(make_models.NAMES)
    for name, path in small_models.items():
        assert path.name == f"{name}.onnx"
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == 17
        (inp,) = model.graph.input
        assert all(d.dim_value > 0 for d in inp.type.tensor_type.shape.dim)  # static shapes
        assert inp.type.tensor_type.shape.dim[0].dim_value == 1  # batch 1


def test_builds_are_byte_identical(tmp_path, small_models):
    again = make_models.build_all(tmp_path, small=True)
    for name, path in small_models.items():
        assert again[name].read_bytes() == path.read_bytes(), name


def test_model_contents():
    """The op patterns each architecture promises are present."""
    def ops(model):
        return [n.op_type for n in model.graph.node]

    resnet = make_models.resnet18(small=True)
    assert ops(resnet).count("Conv") == 20 and ops(resnet).count("BatchNormalization") == 20
    assert ops(resnet).count("Add") == 8 and "MaxPool" in ops(resnet) and "Gemm" in ops(resnet)

    mobile = make_models.mobilenetv2(small=True)
    depthwise = [n for n in mobile.graph.node if n.op_type == "Conv"
                 and next(a.i for a in n.attribute if a.name == "group") > 1]
    assert depthwise and "Clip" in ops(mobile) and "Add" in ops(mobile)

    full_mobile = make_models.mobilenetv2()
    assert sum(1 for n in full_mobile.graph.node if n.name.endswith(".dw.conv")) == 17  # 1+2+3+4+3+3+1 blocks
    assert ops(full_mobile).count("Add") == 10  # residual blocks of the standard table

    enc = ops(make_models.transformer(small=True))
    for op in ("ReduceMean", "Pow", "Sqrt", "Erf", "Softmax", "Transpose", "Reshape",
               "Shape", "Gather", "Unsqueeze", "Concat", "MatMul"):
        assert op in enc, op
    assert enc.count("Softmax") == 2 and enc.count("Erf") == 2

    assert ops(make_models.mlp(small=True)) == ["MatMul", "Add", "Relu", "MatMul", "Add", "Relu", "MatMul", "Add"]


def test_full_size_shapes():
    shapes = {"resnet18": ((1, 3, 224, 224), (1, 1000)), "mobilenetv2": ((1, 3, 224, 224), (1, 1000)),
              "transformer": ((1, 128, 256), (1, 128, 256)), "mlp": ((1, 512), (1, 10))}
    for name, (ins, outs) in shapes.items():
        model = make_models.BUILDERS[name]()
        dims = lambda v: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)  # noqa: E731
        assert dims(model.graph.input[0]) == ins and dims(model.graph.output[0]) == outs, name


@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("name", make_models.NAMES)
def test_small_model_matches_onnxruntime(small_models, name, level):
    report = verify_model(small_models[name], target="host", level=level)
    print(report.format())
    assert report.ok, report.format()
    for o in report.outputs:
        assert o.scale > 1e-2  # the model's output is not degenerate
        assert np.isfinite(o.compiled.abs)


@pytest.mark.parametrize("name", ["transformer", "mobilenetv2"])
def test_bisect_finds_no_divergence_in_the_o2_pipeline(small_models, name):
    report = bisect(small_models[name], target="host", level=2)
    assert report.ok, report.format()


@pytest.mark.slow
def test_full_resnet18_matches_onnxruntime_at_o2(tmp_path):
    path = make_models.build_all(tmp_path, names=("resnet18",))["resnet18"]
    report = verify_model(path, target="host", level=2)
    print(report.format())
    assert report.ok, report.format()
