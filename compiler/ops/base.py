"""The op registry: one `OpDef` per op, the single place an op is defined.

An op definition holds
- its attribute schema (`Attr(kind, default)`; `REQUIRED` for no default),
- type/shape inference: `infer(input_types, attrs) -> [TensorType, ...]`,
- a numpy reference implementation: `reference(arrays, attrs) -> array or [arrays]`,
- its lowering to TVM Relax: `lower(ctx, relax_inputs, attrs, out_types) -> expr or [exprs]`
  (`ctx.bb` is the Relax BlockBuilder, `ctx.target` the edgec target),
- a `kind` used by passes: `elementwise` (same shape, or broadcast), `injective` (data movement),
  `reduction`, `complex` (conv, matmul), `opaque`.

ONNX importers live beside the ops they produce: `@onnx_op("Relu")` registers a converter
`fn(ctx, node, inputs, attrs) -> [Value, ...]` (see `edgec.onnx_import.ImportContext`).

The lowerings reach TVM through `edgec.lazy.LazyModule`s: registering the ops does not load TVM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import UnsupportedError, VerifyError
from ..ir import TensorType

REQUIRED = object()
ATTR_KINDS = ("int", "float", "str", "ints", "floats")


@dataclass(frozen=True)
class Attr:
    kind: str
    default: Any = REQUIRED

    def check(self, name: str, value: Any) -> Any:
        """Normalise `value` to this attribute's kind (tuples become lists), or raise."""
        k = self.kind
        try:
            if k == "int" and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                return int(value)
            if k == "float" and isinstance(value, (int, float, np.floating, np.integer)):
                return float(value)
            if k == "str" and isinstance(value, str):
                return value
            if k == "ints" and all(isinstance(x, (int, np.integer)) for x in value):
                return [int(x) for x in value]
            if k == "floats" and all(isinstance(x, (int, float, np.floating)) for x in value):
                return [float(x) for x in value]
        except TypeError:
            pass
        raise VerifyError(f"attribute {name}={value!r} is not of kind {k}")


@dataclass
class OpDef:
    name: str
    infer: Callable[[list[TensorType], dict], list[TensorType]]
    reference: Callable[[list[np.ndarray], dict], Any]
    lower: Callable[..., Any] | None
    attrs: dict[str, Attr] = field(default_factory=dict)
    kind: str = "opaque"
    num_inputs: tuple[int, int] = (1, 1)  # (min, max); max -1 for variadic
    summary: str = ""

    def complete_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Check attributes against the schema and fill in defaults."""
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise VerifyError(f"op '{self.name}' has no attribute {', '.join(unknown)}")
        out: dict[str, Any] = {}
        for name, spec in self.attrs.items():
            if name in attrs:
                out[name] = spec.check(name, attrs[name])
            elif spec.default is REQUIRED:
                raise VerifyError(f"op '{self.name}' needs attribute '{name}'")
            else:
                out[name] = spec.default
        return out

    def run(self, arrays: list[np.ndarray], attrs: dict[str, Any]) -> list[np.ndarray]:
        """The reference implementation, always returning a list."""
        result = self.reference(arrays, attrs)
        return list(result) if isinstance(result, (list, tuple)) else [result]


OPS: dict[str, OpDef] = {}
ONNX_CONVERTERS: dict[str, Callable[..., Any]] = {}


def register_op(opdef: OpDef) -> OpDef:
    if opdef.name in OPS:
        raise ValueError(f"op {opdef.name!r} is defined twice")
    OPS[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    if name not in OPS:
        raise UnsupportedError(f"unknown op '{name}' (see `edgec ops` for the registered ones)")
    return OPS[name]


def onnx_op(*op_types: str):
    """Register an ONNX importer for one or more ONNX op types."""
    def wrap(fn):
        for t in op_types:
            if t in ONNX_CONVERTERS:
                raise ValueError(f"ONNX op {t!r} has two importers")
            ONNX_CONVERTERS[t] = fn
        return fn
    return wrap


# ---- shared inference helpers ---------------------------------------------------------------

def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise VerifyError(f"shapes {', '.join(str(list(s)) for s in shapes)} do not broadcast") from None


def same_as_first(types: list[TensorType], attrs: dict) -> list[TensorType]:
    return [types[0]]


def broadcast_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    return [TensorType(types[0].dtype, broadcast_shapes(*(t.shape for t in types)))]


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise VerifyError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0
