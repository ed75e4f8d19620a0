"""Lowering: an edgec Graph to a TVM Relax IRModule, one op at a time through the registry.

The Relax function `main` takes the graph inputs in order and returns a tuple of the outputs.
Every lowered value is checked against the type edgec inferred, so a lowering bug is reported
at the node that has it, with its ONNX origin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import relax

from edgec.errors import EdgecError, VerifyError
from edgec.ir import DTYPES, Graph, Value, gc_paused
from edgec.ops import get_op


@dataclass
class LowerContext:
    """What an op's `lower` sees: the Relax block builder and the edgec target."""

    bb: relax.BlockBuilder
    target: Any

    def emit(self, expr: relax.Expr) -> relax.Expr:
        return self.bb.emit(expr)


def relax_type(v: Value) -> relax.TensorType:
    return relax.TensorType(list(v.type.shape), DTYPES[v.type.dtype].name)


def _param_name(name: str, i: int) -> str:
    clean = re.sub(r"\W", "_", name)
    return clean if clean and not clean[0].isdigit() else f"input{i}_{clean}"


def _check(node, expr: relax.Expr, expected) -> None:
    sinfo = expr.ty
    shape = tuple(int(d) for d in sinfo.shape) if sinfo.shape is not None else None
    dtype = str(sinfo.dtype)
    if shape != expected.shape or dtype != DTYPES[expected.dtype].name:
        raise VerifyError(f"{node.describe()}: the lowering produced {dtype}{list(shape or [])}, "
                          f"edgec inferred {expected} (a bug in the lowering of '{node.op}')")


@gc_paused()
def lower_graph(graph: Graph, target: Any) -> tvm.IRModule:
    """Build the Relax module for `graph`."""
    bb = relax.BlockBuilder()
    ctx = LowerContext(bb, target)
    params = [relax.Var(_param_name(v.name, i), relax_type(v)) for i, v in enumerate(graph.inputs)]
    env: dict[int, relax.Expr] = {id(v): p for v, p in zip(graph.inputs, params)}

    def get(v: Value) -> relax.Expr:
        if id(v) not in env:
            env[id(v)] = relax.const(np.array(v.const_value(), order="C"), DTYPES[v.type.dtype].name)
        return env[id(v)]

    with bb.function("main", params):
        with bb.dataflow():
            for node in graph.nodes:
                opdef = get_op(node.op)
                if opdef.lower is None:
                    raise EdgecError(f"{node.describe()}: op '{node.op}' has no lowering to TVM yet")
                out_types = [o.type for o in node.outputs]
                try:
                    result = opdef.lower(ctx, [get(v) for v in node.inputs], node.attrs, out_types)
                except EdgecError:
                    raise
                except Exception as e:  # noqa: BLE001 - TVM raises many kinds; name the node
                    raise EdgecError(f"{node.describe()}: lowering to TVM failed: "
                                     f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
                if len(node.outputs) == 1 and not isinstance(result, (list, tuple)):
                    results = [bb.emit(result)]
                elif isinstance(result, (list, tuple)):
                    results = [bb.emit(r) for r in result]
                else:
                    tup = bb.emit(result)
                    results = [bb.emit(relax.TupleGetItem(tup, i)) for i in range(len(node.outputs))]
                for o, r in zip(node.outputs, results):
                    _check(node, r, o.type)
                    env[id(o)] = r
            out = bb.emit_output(relax.Tuple([get(v) for v in graph.outputs]))
        bb.emit_func_output(out)
    return bb.get()
