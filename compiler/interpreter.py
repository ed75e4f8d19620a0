"""The numpy reference interpreter: the oracle for passes and lowering."""

from __future__ import annotations

import numpy as np

from .errors import InputError, VerifyError
from .ir import Graph, TensorType, Value
from .ops import get_op


def check_feeds(expected: list[tuple[str, TensorType]], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs by name, checked against (name, type) pairs: names, shapes and dtypes.

    The one input check of edgec: the interpreter, compiled artifacts and the ONNX backend use it."""
    types = dict(expected)
    unknown = sorted(set(feeds) - set(types))
    missing = [n for n in types if n not in feeds]
    if unknown or missing:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"'{n}' ({types[n]})" for n in missing))
        if unknown:
            parts.append("unknown " + ", ".join(f"'{n}'" for n in unknown))
        raise InputError(f"inputs do not match the model: {'; '.join(parts)}; "
                         f"expected {', '.join(f'{n}: {t}' for n, t in expected)}")
    out = {}
    for name, t in expected:
        arr = np.asarray(feeds[name])
        if arr.dtype != t.np_dtype or tuple(arr.shape) != t.shape:
            raise InputError(f"input '{name}' is {arr.dtype}{list(arr.shape)}; the model expects "
                             f"{t.np_dtype}{list(t.shape)}")
        out[name] = np.require(arr, requirements="C")  # contiguous; keeps 0-d arrays 0-d
    return out


def check_inputs(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`check_feeds` against the graph's inputs."""
    return check_feeds([(v.name, v.type) for v in graph.inputs], feeds)


def interpret_values(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Run `graph` with each op's reference implementation, keeping every value: id(Value) -> array."""
    feeds = check_inputs(graph, feeds)
    env: dict[int, np.ndarray] = {id(v): feeds[v.name] for v in graph.inputs}

    def get(v: Value) -> np.ndarray:
        return v.const_value() if v.is_const else env[id(v)]

    for node in graph.nodes:
        results = get_op(node.op).run([get(v) for v in node.inputs], node.attrs)
        for o, r in zip(node.outputs, results):
            r = np.asarray(r)
            if r.shape != o.type.shape:
                raise VerifyError(f"{node.describe()}: the reference gave shape {list(r.shape)}, "
                                  f"the inferred type is {o.type} (a bug in op '{node.op}')")
            env[id(o)] = r.astype(o.type.np_dtype, copy=False)
    for v in graph.outputs:
        if v.is_const:
            env[id(v)] = v.const_value()
    return env


def interpret(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run `graph` on numpy inputs with each op's reference implementation."""
    env = interpret_values(graph, feeds)
    return {name: env[id(v)] for name, v in zip(graph.output_names, graph.outputs)}
