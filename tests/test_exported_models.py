"""The models of tools/make_exported_models.py (shaped like exported OCR, VAD and transformer
models) against ONNX Runtime: `edgec verify` on host at -O2 and -O3 and on arm-a72 under qemu.

A model whose op edgec does not import yet (`REQUIRES`) has its verify tests skipped until the
importer is registered; the tests then run by themselves.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgec.verify import verify_model

from toolchain import needs_arm_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_exported_models  # noqa: E402

NAMES = make_exported_models.NAMES


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_exported_models.build_all(tmp_path_factory.mktemp("exported"))


def test_builds_write_checked_identical_models(models, tmp_path):
    assert sorted(models) == sorted(NAMES)
    again = make_exported_models.build_all(tmp_path)
    for name, path in models.items():
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        assert again[name].read_bytes() == path.read_bytes(), name


def test_models_have_the_exported_patterns():
    def ops(model):
        return [n.op_type for n in model.graph.node]

    unet = ops(make_exported_models.unet())
    assert unet.count("ConvTranspose") == 2 and unet.count("Concat") == 2 and unet[-1] == "Sigmoid"
    shape_if = make_exported_models.shape_if()
    assert [op for op in ops(shape_if) if op in ("Shape", "Gather", "Equal", "If")] == ["Shape", "Gather", "Equal", "If"]
    branch = {a.name: [n.op_type for n in a.g.node] for a in shape_if.graph.node[ops(shape_if).index("If")].attribute}
    assert branch == {"then_branch": ["Reshape"], "else_branch": ["Flatten"]}
    crnn = make_exported_models.crnn()
    (lstm,) = [n for n in crnn.graph.node if n.op_type == "LSTM"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lstm.attribute}
    assert attrs == {"hidden_size": 128, "direction": b"bidirectional"}
    assert ops(crnn)[-1] == "LogSoftmax"
    assert [d.dim_value for d in crnn.graph.output[0].type.tensor_type.shape.dim] == [40, 1, 100]
    assert "GRU" in ops(make_exported_models.vad())
    block = ops(make_exported_models.transformer_block())
    assert block.count("LayerNormalization") == 2 and {"Erf", "Softmax", "MatMul"} <= set(block)


def _verify(path, target, level):
    report = verify_model(path, target=target, level=level)
    assert report.ok, report.format()
    for o in report.outputs:
        assert o.scale > 1e-2, f"{path.name}: output {o.name} is degenerate"  # so that the check says something
        assert np.isfinite(o.compiled.abs)


@pytest.mark.parametrize("level", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_verify_on_host(models, name, level):
    _verify(models[name], "host", level)


@needs_arm_run
@pytest.mark.parametrize("name", NAMES)
def test_verify_on_arm_a72(models, name):
    _verify(models[name], "arm-a72", 2)
