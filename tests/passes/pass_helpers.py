"""Helpers for the pass tests: golden text-in/text-out checks and running one pass."""

from __future__ import annotations

import numpy as np

import edgec
from edgec.passmanager import PassManager, get_pass, parse_pipeline

from onnx_util import assert_close
from edgec.testing import random_inputs


def run_pass(text: str, pipeline: str):
    """Parse `text`, run `pipeline` through the pass manager (which verifies after each pass and
    rejects a pass that changed the graph but returned False); returns (before, after, manager)."""
    before = edgec.parse_ir(text)
    after = before.copy()
    pm = PassManager(pipeline)
    pm.run(after)
    return before, after, pm


def golden(text: str, pipeline: str, expected: str, seed: int = 0):
    """The pipeline turns `text` into `expected` (both parsed, so defaults and spacing need not be
    written out), and the interpreter agrees on both graphs for random inputs."""
    before, after, pm = run_pass(text, pipeline)
    want = str(edgec.parse_ir(expected))
    assert str(after) == want, f"\n--- got ---\n{after}\n--- expected ---\n{want}"
    feeds = random_inputs(before, seed)
    assert_close(edgec.interpret(after, feeds), edgec.interpret(before, feeds), what=pipeline)
    return pm


def unchanged(text: str, pass_spec: str) -> list[str]:
    """The pass does not apply: the printed text stays, run() returns False; returns the
    reasons the pass's checks gave (its refusals), as strings."""
    (name, opts), = parse_pipeline(pass_spec)
    graph = edgec.parse_ir(text)
    printed = str(graph)
    p = get_pass(name)(**opts)
    assert p.run(graph) is False
    assert str(graph) == printed
    return [r.reason for r in getattr(p, "refusals", [])]


def const_text(values) -> str:
    """How the printer writes a small constant's elements (f32)."""
    return "[" + ",".join(str(np.float32(v)) for v in np.asarray(values).reshape(-1)) + "]"
