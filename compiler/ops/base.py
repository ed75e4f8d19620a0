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
`fn(ctx, node, inputs, attrs) -> [Value, ...]` (see `edgec.onnx_import.ImportContext`); an op of
another domain is registered under `domain.OpType` (`@onnx_op("QLinearAdd", domain="com.microsoft")`,
key "com.microsoft.QLinearAdd"), and its converter checks its own input count (ONNX has no schema
for it).

The lowerings reach TVM through `edgec.lazy.LazyModule`s: registering the ops does not load TVM.

No op takes more than `MAX_FAN_IN` (64) inputs, except `einsum` (an equation over more than 64
operands runs out of letters long before): the importer splits a wider ONNX Concat into a
balanced tree of concats, and Sum/Max/Min/Mean into a balanced tree of binary ops
(`balanced_tree`), so that no kernel, and neither the lowering nor TVM, sees thousands of
operands (a 3,000-input concat made TVM crash).
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
    # Traits, which passes and tools read here rather than keep lists of op names:
    commutative: bool = False  # op(a, b) == op(b, a) (CSE matches both orders)
    activation: bool = False  # fuse-activation may fold it into a conv, dense or matmul
    anchor: bool = False  # takes a fused bias and activation, and anchors a `fused` epilogue
    layout_sensitive: bool = False  # has a `layout` attribute that convert-layout rewrites
    macs: Callable[[Any], int] | None = None  # multiply-accumulates of a node of this op

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


def ops_with(trait: str) -> tuple[str, ...]:
    """The names of the registered ops that have `trait` (an OpDef field: "commutative",
    "activation", "anchor", "layout_sensitive", "macs"), sorted."""
    return tuple(sorted(name for name, op in OPS.items() if getattr(op, trait)))


def get_op(name: str) -> OpDef:
    if name not in OPS:
        raise UnsupportedError(f"unknown op '{name}' (see `edgec ops` for the registered ones)")
    return OPS[name]


def onnx_key(domain: str, op_type: str) -> str:
    """The ONNX_CONVERTERS key of an op type: itself in the default domain, else `domain.op_type`."""
    return op_type if domain in ("", "ai.onnx") else f"{domain}.{op_type}"


def onnx_op(*op_types: str, domain: str = ""):
    """Register an ONNX importer for one or more ONNX op types (of `domain`, default ONNX's)."""
    def wrap(fn):
        for t in op_types:
            key = onnx_key(domain, t)
            if key in ONNX_CONVERTERS:
                raise ValueError(f"ONNX op {key!r} has two importers")
            ONNX_CONVERTERS[key] = fn
        return fn
    return wrap


# ---- shared inference helpers ---------------------------------------------------------------

MAX_FAN_IN = 64


def balanced_tree(values: list, fan_in: int, combine: Callable[[list], Any]) -> Any:
    """`combine` applied over `values` as a balanced tree, in order: each call gets at most
    `fan_in` (at least 2) of them; one value is returned as it is. Depth: log_fan_in(len(values)).
    With fan_in 2, [a, b, c, d] -> combine([combine([a, b]), combine([c, d])])."""
    values = list(values)
    while len(values) > 1:
        groups = -(-len(values) // fan_in)  # ceil: as few calls as the limit allows, sizes within 1
        size, extra = divmod(len(values), groups)
        out, start = [], 0
        for g in range(groups):
            end = start + size + (g < extra)
            out.append(values[start] if end - start == 1 else combine(values[start:end]))
            start = end
        values = out
    return values[0]


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's broadcasting rule, in plain Python (numpy's own costs tens of microseconds, and
    inference runs for every node at import and in every verification)."""
    out: list[int] = []
    for k in range(max(map(len, shapes), default=0), 0, -1):
        dim = 1
        for s in shapes:
            d = int(s[-k]) if len(s) >= k else 1
            if d != 1:
                if dim not in (1, d):
                    raise VerifyError(f"shapes {', '.join(str(list(s)) for s in shapes)} do not broadcast")
                dim = d
        out.append(dim)
    return tuple(out)


def same_as_first(types: list[TensorType], attrs: dict) -> list[TensorType]:
    return [types[0]]


def broadcast_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    return [TensorType(types[0].dtype, broadcast_shapes(*(t.shape for t in types)))]


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise VerifyError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0
