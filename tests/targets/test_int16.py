"""int8 on x86 hosts with AVX2: quantized matmuls and group-1 convs with a constant weight run
as exact int16 products on `vpmaddwd` (targets/schedules/int16.py) and stay bit-exact.

Each model is built for the host, its library disassembled (vpmaddwd must be there, and the
kernel scheduled by the `int16_madd` rule) and its outputs compared exactly with ONNX Runtime
(in its exact u8 x s8 mode, see test_int8.py). Cases: the operand and zero-point cases of
test_int8.py (u8/i8 combinations, per-channel scales and zero points, K and N not multiples
of 8, batched activations, 1x1 and 3x3 convs with padding, stride and dilation), odd channel
counts, the extremes of x - zp and w - zp, per-row activation zero points, NCHW convs (-O1),
and the cases that keep the generic lowering (depthwise conv, 3 input channels, weight given at
run time).
Skipped on hosts without AVX2.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from onnx import helper

import edgec
from edgec.targets import get_target
from onnx_util import make_model, run_ort
from test_int8 import CONV_CASES, MATMUL_CASES, _scalar, _values, conv_integer, matmul_integer, qlinear_conv

pytestmark = pytest.mark.skipif(not get_target("host").avx2, reason="the host has no AVX2")


def _vpmaddwd_count(art) -> int:
    asm = subprocess.run(["objdump", "-d", str(art.path / "model.so")], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    return len(re.findall(r"\bvpmaddwd\b", asm))


def _check(model, feeds, tmp_path, expect_madd: bool, name: str = "art", level: int = 2):
    """Build for the host, check the vpmaddwd kernels, compare exactly with ONNX Runtime."""
    result = edgec.compile(model, target="host", output=tmp_path / name, level=level)
    uses_rule = "int16_madd" in result.schedules.values()
    assert uses_rule == expect_madd, result.schedules
    if expect_madd:
        assert _vpmaddwd_count(result.artifact) > 0
    got = result.artifact.run(feeds)
    for key, value in run_ort(model, feeds).items():
        assert got[key].dtype == value.dtype, (key, got[key].dtype, value.dtype)
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    return result


MORE_CASES = {
    # x - zp = 255 and w - zp = -255 everywhere: pair sums of -130050, the largest magnitude
    "extremes_u8xu8": lambda r: _extremes(),
    "qlinear_conv_u8xi8_odd_3x3_stride2": lambda r: qlinear_conv(r, "u8", "i8", (1, 5, 9, 11), 11, (3, 3), 3,
                                                                list(r.integers(-4, 5, 11)), 130,
                                                                pads=[1, 1, 1, 1], strides=[2, 2]),
    "qlinear_conv_i8xi8_odd_1x1": lambda r: qlinear_conv(r, "i8", "i8", (1, 13, 5, 7), 19, (1, 1), 9, [0] * 19, -3),
    "conv_integer_u8xi8_5x5": lambda r: conv_integer(r, "u8", "i8", (2, 7, 8, 8), 9, (5, 5), 100, -20,
                                                     pads=[2, 2, 2, 2]),
    "matmul_integer_u8xi8_3d_n23": lambda r: matmul_integer(r, "u8", "i8", (2, 5, 37), 23, 250, -77),
}


def _extremes():
    a = np.full((3, 9), 255, np.uint8)
    model = make_model([helper.make_node("MatMulInteger", ["a", "b", "azp", "bzp"], ["out"])], {"a": a}, ["out"],
                       {"b": np.zeros((9, 10), np.uint8), "azp": _scalar("u8", 0), "bzp": _scalar("u8", 255)})
    return model, {"a": a}


# conv_integer_u8xu8_3x3_pad_stride has 3 input channels: the generic lowering (see the rgb case below)
ALL_CASES = {name: case for name, case in {**MATMUL_CASES, **CONV_CASES, **MORE_CASES}.items()
             if name != "conv_integer_u8xu8_3x3_pad_stride"}


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_host_uses_vpmaddwd_and_matches_onnxruntime(case, tmp_path):
    model, feeds = ALL_CASES[case](np.random.default_rng(21))
    _check(model, feeds, tmp_path, expect_madd=True)


def test_nchw_conv_at_o1(tmp_path):
    """-O1 keeps the model's NCHW layout: the kernel transposes its input while packing it."""
    model, feeds = CONV_CASES["qlinear_conv_u8xu8_dilated"](np.random.default_rng(22))
    result = _check(model, feeds, tmp_path, expect_madd=True, level=1)
    assert all(n.attrs["layout"] == "NCHW" for n in result.graph.nodes if n.op == "qlinear_conv")


def test_per_row_a_zero_point(tmp_path):
    """MatMulInteger with one a zero point per row (ONNX Runtime does not run it): compared with
    the product computed here in int64."""
    rng = np.random.default_rng(23)
    a, b = _values(rng, "u8", (5, 23)), _values(rng, "i8", (23, 7))
    azp, bzp = np.array([0, 3, 128, 200, 255], np.uint8), np.array(-77, np.int8)
    model = make_model([helper.make_node("MatMulInteger", ["a", "b", "azp", "bzp"], ["out"])], {"a": a}, ["out"],
                       {"b": b, "azp": azp, "bzp": bzp})
    result = edgec.compile(model, target="host", output=tmp_path / "art")
    assert "int16_madd" in result.schedules.values() and _vpmaddwd_count(result.artifact) > 0
    expected = (a.astype(np.int64) - azp.reshape(-1, 1)) @ (b.astype(np.int64) - int(bzp))
    np.testing.assert_array_equal(result.artifact.run({"a": a})["out"], expected.astype(np.int32))


def test_generic_cases_stay_exact(tmp_path):
    """A depthwise conv, a conv of 3 input channels and a matmul whose B is a run-time input keep
    the generic int32 lowering."""
    rng = np.random.default_rng(24)
    model, feeds = qlinear_conv(rng, "u8", "i8", (1, 3, 9, 9), 16, (3, 3), 120, [0] * 16, 128, pads=[1, 1, 1, 1],
                                strides=[2, 2])
    _check(model, feeds, tmp_path, expect_madd=False, name="rgb")
    model, feeds = conv_integer(rng, "u8", "i8", (1, 6, 7, 7), 6, (3, 3), 131, 3, group=6, pads=[1, 1, 1, 1])
    _check(model, feeds, tmp_path, expect_madd=False, name="depthwise")
    feeds = {"a": _values(rng, "u8", (4, 12)), "b": _values(rng, "u8", (12, 9))}
    model = make_model([helper.make_node("MatMulInteger", ["a", "b", "azp"], ["out"])], feeds, ["out"],
                       {"azp": _scalar("u8", 9)})
    _check(model, feeds, tmp_path, expect_madd=False, name="runtime_b")
