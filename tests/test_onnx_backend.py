"""The ONNX backend conformance suite shipped with the `onnx` package, run through edgec.

`onnx.backend.test.BackendTest(EdgecBackend, __name__)` generates one unittest case per ONNX
node test (1884 in onnx 1.23, built in memory) and per model in the `simple`,
`pytorch-converted`, `pytorch-operator` and `light` sets (the light models are ResNet-50,
SqueezeNet, ShuffleNet, DenseNet-121, Inception v1/v2, VGG-19, AlexNet and ZFNet with constant
weights). Each case compiles the model for the host CPU at -O2 and compares with the outputs the
onnx package stores.

Cases listed in `onnx_backend_expected_failures.txt` (a regex matched against the whole test
name, then ' # ' and the reason) are marked xfail(strict=False): a listed case that starts
passing shows up as XPASS, and `tools/update_expected_failures.py` rewrites the list. CUDA cases
are skipped (the backend answers `supports_device` for the CPU only).

Run it on both cores: `python -m pytest -n 2 tests/test_onnx_backend.py`.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

import onnx.backend.test
import pytest

from edgec.backend import EdgecBackend

EXPECTED_FAILURES = Path(__file__).with_name("onnx_backend_expected_failures.txt")

# The light models' generated inputs go here instead of ~/.onnx (see onnx's runner).
os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "edgec-onnx-home"))


def read_expected_failures(path: Path = EXPECTED_FAILURES) -> list[tuple[str, str]]:
    """(pattern, reason) pairs; every entry must have a reason."""
    entries = []
    if not path.is_file():
        return entries
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, sep, reason = line.partition(" # ")
        if not sep or not reason.strip() or not pattern.strip():
            raise ValueError(f"{path}:{lineno}: an entry is 'PATTERN # REASON'; got {line!r}")
        entries.append((pattern.strip(), reason.strip()))
    return entries


def _mark_expected_failures(test_cases: dict, entries: list[tuple[str, str]]) -> None:
    exact = {p: r for p, r in entries if re.escape(p) == p}  # most entries are plain names
    compiled = [(re.compile(p), r) for p, r in entries if p not in exact]
    for case in test_cases.values():
        for name in dir(case):
            if not name.startswith("test_"):
                continue
            reason = exact.get(name) or next((r for p, r in compiled if p.fullmatch(name)), None)
            if reason is not None:
                func = getattr(case, name)
                setattr(case, name, pytest.mark.xfail(reason=reason, strict=False)(func))


with warnings.catch_warnings():  # generating the node cases overflows casts on purpose
    warnings.simplefilter("ignore", RuntimeWarning)
    backend_test = onnx.backend.test.BackendTest(EdgecBackend, __name__)
_test_cases = backend_test.test_cases
_mark_expected_failures(_test_cases, read_expected_failures())
globals().update(_test_cases)


def test_expected_failures_file_is_well_formed():
    """Every entry has a reason and matches at least one case of the suite."""
    names = {n for case in _test_cases.values() for n in dir(case) if n.startswith("test_")}
    for pattern, reason in read_expected_failures():
        assert reason, pattern
        assert pattern in names or any(re.fullmatch(pattern, n) for n in names), \
            f"entry {pattern!r} matches no test"


# ---- the backend itself ----------------------------------------------------------------------

def _reshape_model(shape_as_input: bool):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])]
    inits = []
    if shape_as_input:
        ins.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [2]))
    else:
        inits.append(numpy_helper.from_array(np.array([3, 4], np.int64), "shape"))
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"]),
                               helper.make_node("Relu", ["y"], ["z"])], "g", ins,
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_backend_devices():
    assert EdgecBackend.supports_device("CPU")
    assert not EdgecBackend.supports_device("CUDA")


def test_backend_runs_by_position_and_by_name():
    import numpy as np
    from edgec.errors import InputError
    rep = EdgecBackend.prepare(_reshape_model(False))
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    expected = np.maximum(x.reshape(3, 4), 0)
    np.testing.assert_allclose(rep.run([x])[0], expected)
    np.testing.assert_allclose(rep.run({"x": x})["z"], expected)
    with pytest.raises(InputError, match="float32\\[2, 6\\]"):
        rep.run([x.astype(np.float64)])
    with pytest.raises(InputError, match="1 input"):
        rep.run([x, x])


def test_backend_binds_shape_inputs_at_run():
    """A shape fed as a graph input is bound to its run-time value (one compile per value)."""
    import numpy as np
    rep = EdgecBackend.prepare(_reshape_model(True))
    x = np.random.default_rng(1).standard_normal((2, 6)).astype(np.float32)
    for shape in ([3, 4], [4, 3], [3, 4]):
        out = rep.run([x, np.array(shape, np.int64)])[0]
        np.testing.assert_allclose(out, np.maximum(x.reshape(shape), 0))
    assert rep.bound_names == ["shape"] and len(rep._compiled) == 2


def _range_model(size_dtype):
    """y = Range(0, Cast(size * 2, float), 1): the limit is computed from the graph input `size`."""
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np
    consts = [numpy_helper.from_array(np.array(0, np.float32), "start"),
              numpy_helper.from_array(np.array(1, np.float32), "delta"),
              numpy_helper.from_array(np.array(2, size_dtype), "two")]
    nodes = [helper.make_node("Mul", ["size", "two"], ["double"]),
             helper.make_node("Cast", ["double"], ["limit"], to=TensorProto.FLOAT),
             helper.make_node("Range", ["start", "limit", "delta"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "size", helper.np_dtype_to_tensor_dtype(np.dtype(size_dtype)), [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_backend_binds_inputs_a_shape_is_computed_from():
    """An integer graph input that a shape-like operand is computed from (not the operand itself)
    is bound too; a float input (data) never is."""
    import numpy as np
    from edgec.errors import UnsupportedError
    rep = EdgecBackend.prepare(_range_model(np.int64))
    np.testing.assert_array_equal(rep.run([np.array(3, np.int64)])[0], np.arange(6, dtype=np.float32))
    assert rep.bound_names == ["size"]
    with pytest.raises(UnsupportedError, match="'limit' must be a constant"):
        EdgecBackend.prepare(_range_model(np.float32))
