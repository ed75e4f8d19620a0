"""Progress bars: `edgec tune`'s measurements, `edgec compile`'s kernels (scheduled, built,
written), drawn on a terminal only and, for compile, only once it has taken 2 s; the kernels'
code is generated on several threads, with the same library whatever their number."""

from __future__ import annotations

import io

import numpy as np
import pytest
from onnx import helper

import edgec
from edgec import driver
from edgec.progress import Progress
from onnx_util import assert_close, make_model, run_ort


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_have_an_eta():
    out = io.StringIO()
    p = Progress(4, "measurements", out)
    for _ in range(2):
        p.step("k")
    p.note("kernel k")
    text = out.getvalue()
    assert "\r" not in text and "2/4 measurements" in text and "ETA" in text and "kernel k" in text


def test_on_a_terminal_one_line_is_redrawn():
    out = Terminal()
    p = Progress(3, "measurements", out)
    for _ in range(3):
        p.step("k")
    p.finish("done")
    text = out.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and "3/3 measurements" in text and "ETA" in text


def test_nothing_is_drawn_before_after_or_off_a_terminal():
    late = Terminal()
    p = Progress(3, "kernels built", late, after=3600, lines=False)
    p.step()
    p.note("x")
    p.clear()
    plain = io.StringIO()
    q = Progress(3, "kernels built", plain, lines=False)
    q.step()
    q.note("x")
    assert late.getvalue() == "" and plain.getvalue() == ""


def _chain_model(n=6):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 16)).astype(np.float32)
    nodes, inits, prev = [], {}, "x"
    for i in range(n):
        inits[f"w{i}"] = rng.standard_normal((16, 16)).astype(np.float32)
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]), helper.make_node("Tanh", [f"m{i}"], [f"t{i}"])]
        prev = f"t{i}"
    return make_model(nodes, {"x": x}, [prev], inits), x


def test_compile_draws_its_stages_and_clears_the_line(tmp_path, monkeypatch):
    monkeypatch.setattr(driver, "COMPILE_PROGRESS_AFTER_S", 0.0)
    model, _ = _chain_model()
    out = Terminal()
    result = edgec.compile(model, target="host", output=tmp_path / "art", progress=out, jobs=2)
    text = out.getvalue()
    n = len(result.kernels)
    assert n >= 6
    for stage in ("kernels scheduled", "kernels built", "kernels written"):
        assert stage in text, text
    assert f"{n}/{n} kernels built" in text and f"{n}/{n} kernels written" in text
    assert text.endswith("\r" + " " * Progress.WIDTH + "\r")  # the bar is gone once the compile is done


def test_a_quick_compile_draws_nothing(tmp_path):
    model, _ = _chain_model(1)
    out = Terminal()
    edgec.compile(model, target="host", output=tmp_path / "art", progress=out)
    assert out.getvalue() == ""


@pytest.mark.parametrize("target", ["host", "arm-a72"])
def test_the_library_does_not_depend_on_the_number_of_jobs(tmp_path, target):
    from edgec.errors import ToolError
    model, x = _chain_model()
    try:
        one = edgec.compile(model, target=target, output=tmp_path / "one", jobs=1)
    except ToolError as e:
        pytest.skip(str(e))  # no aarch64 cross linker here
    edgec.compile(model, target=target, output=tmp_path / "two", jobs=2)
    assert (tmp_path / "one" / driver.LIBRARY).read_bytes() == (tmp_path / "two" / driver.LIBRARY).read_bytes()
    if target == "host":
        assert_close(one.artifact.run({"x": x}), run_ort(model, {"x": x}))
