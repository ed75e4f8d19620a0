"""The edgec IR: a small, mutable, value-centred SSA graph.

- `TensorType`: dtype name (`f32`, `i64`, ...) and a static shape.
- `Value`: a tensor. A graph input, a constant (with a numpy payload) or a node result. It knows
  its producer and its uses; uses are kept in sync by `Node.set_input`, the only setter that
  rewires an input.
- `Node`: op name, inputs, attributes, outputs and `origin`, the ONNX node names it came from.
- `Graph`: inputs, outputs (with their user-facing names), nodes in topological order, and the
  mutation helpers passes use.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from .errors import VerifyError

# Limits the ONNX importer, the text parser and the .npy reader check before allocating anything:
MAX_ELEMENTS = 1 << 31  # elements in one tensor
MAX_RANK = 64  # dims of one tensor: numpy's limit
MAX_CONSTANT_BYTES = 4 << 30  # bytes of all the constants of one model or text file together

# dtype name -> numpy dtype. The names are what the text format prints.
DTYPES: dict[str, np.dtype] = {
    "f64": np.dtype("float64"),
    "f32": np.dtype("float32"),
    "f16": np.dtype("float16"),
    "i64": np.dtype("int64"),
    "i32": np.dtype("int32"),
    "i16": np.dtype("int16"),
    "i8": np.dtype("int8"),
    "u64": np.dtype("uint64"),
    "u32": np.dtype("uint32"),
    "u16": np.dtype("uint16"),
    "u8": np.dtype("uint8"),
    "bool": np.dtype("bool"),
}
_NAME_OF_NUMPY = {v: k for k, v in DTYPES.items()}


def dtype_name(dtype: Any) -> str:
    """The edgec name of a numpy dtype (`float32` -> `f32`)."""
    dt = np.dtype(dtype)
    if dt not in _NAME_OF_NUMPY:
        raise VerifyError(f"dtype {dt} is not supported by edgec (supported: {', '.join(DTYPES)})")
    return _NAME_OF_NUMPY[dt]


def is_float(dtype: str) -> bool:
    return dtype in ("f16", "f32", "f64")


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise VerifyError(f"unknown dtype {self.dtype!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        return TensorType(dtype_name(array.dtype), array.shape)


class Value:
    """A tensor in the graph: a graph input, a constant, or output `index` of `producer`."""

    def __init__(self, type: TensorType, name: str | None = None, const: np.ndarray | None = None):
        self.type = type
        self.name = name  # the user's name, for graph inputs; printing never relies on it
        self.const = const
        self._producer: Node | None = None
        self.index = 0
        self._uses: list[tuple[Node, int]] = []
        # A constant parsed from a dump that showed only its hash: prints the same, cannot run.
        self.placeholder_hash: str | None = None

    def producer(self) -> "Node | None":
        return self._producer

    def uses(self) -> list[tuple["Node", int]]:
        return list(self._uses)

    @property
    def is_const(self) -> bool:
        return self.const is not None or self.placeholder_hash is not None

    def const_value(self) -> np.ndarray:
        """The constant payload; a placeholder constant refuses."""
        if self.placeholder_hash is not None:
            raise VerifyError(
                f"constant #{self.placeholder_hash} {self.type} was parsed from a dump that showed "
                "only its hash; print the IR with full constants (--full-constants) to run it")
        if self.const is None:
            raise VerifyError(f"value {self.type} is not a constant")
        return self.const

    def __repr__(self) -> str:
        kind = "const" if self.is_const else ("input" if self._producer is None else self._producer.op)
        return f"<Value {kind} {self.type}>"


class Node:
    """One operation. Inputs change only through `set_input`, which keeps uses in sync."""

    def __init__(self, op: str, inputs: Iterable[Value], attrs: dict[str, Any] | None,
                 out_types: Iterable[TensorType], origin: Iterable[str] = ()):
        self.op = op
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.origin: tuple[str, ...] = tuple(origin)
        self._inputs: list[Value] = []
        for v in inputs:
            self._inputs.append(v)
            v._uses.append((self, len(self._inputs) - 1))
        self.outputs: list[Value] = []
        for i, t in enumerate(out_types):
            v = Value(t)
            v._producer, v.index = self, i
            self.outputs.append(v)
        self.graph: Graph | None = None

    @property
    def inputs(self) -> tuple[Value, ...]:
        return tuple(self._inputs)

    @property
    def output(self) -> Value:
        if len(self.outputs) != 1:
            raise VerifyError(f"{self.describe()} has {len(self.outputs)} outputs, not one")
        return self.outputs[0]

    def set_input(self, index: int, value: Value) -> None:
        old = self._inputs[index]
        old._uses.remove((self, index))
        self._inputs[index] = value
        value._uses.append((self, index))

    def _drop_inputs(self) -> None:
        for i, v in enumerate(self._inputs):
            v._uses.remove((self, i))
        self._inputs = []

    def describe(self) -> str:
        """How errors name this node: op and ONNX origin."""
        where = f" (from ONNX node {', '.join(repr(o) for o in self.origin)})" if self.origin else ""
        return f"node '{self.op}'{where}"

    def __repr__(self) -> str:
        return f"<Node {self.op} origin={list(self.origin)}>"


class Graph:
    """Inputs, outputs and nodes in topological order."""

    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.output_names: list[str] = []
        self.nodes: list[Node] = []
        self._insert_at: int | None = None

    # ---- building -------------------------------------------------------------------------
    def add_input(self, name: str, type: TensorType) -> Value:
        v = Value(type, name=name)
        self.inputs.append(v)
        return v

    def set_outputs(self, values: list[Value], names: list[str]) -> None:
        self.outputs, self.output_names = list(values), list(names)

    @staticmethod
    def const(array: Any, dtype: str | None = None) -> Value:
        """A constant Value (not owned by any node; it belongs to the graph through its uses)."""
        arr = np.asarray(array, dtype=DTYPES[dtype] if dtype else None)
        if arr.dtype == np.float64 and dtype is None and not isinstance(array, np.ndarray):
            arr = arr.astype(np.float32)
        arr = np.array(arr, order="C")  # a copy; np.ascontiguousarray would make 0-d arrays 1-d
        arr.flags.writeable = False
        return Value(TensorType.of(arr), const=arr)

    def add(self, op: str, inputs: Iterable[Value], attrs: dict[str, Any] | None = None,
            origin: Iterable[str] = (), out_types: Iterable[TensorType] | None = None) -> Node:
        """Create a node (types inferred by the op registry unless given) at the insertion point."""
        inputs = list(inputs)
        attrs = dict(attrs or {})
        if out_types is None:
            from .ops import get_op
            opdef = get_op(op)
            attrs = opdef.complete_attrs(attrs)
            out_types = opdef.infer([v.type for v in inputs], attrs)
        node = Node(op, inputs, attrs, out_types, origin)
        node.graph = self
        if self._insert_at is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(self._insert_at, node)
            self._insert_at += 1
        return node

    @contextlib.contextmanager
    def inserting_before(self, node: Node) -> Iterator[None]:
        """Nodes added inside the block go before `node`, in the order they are added."""
        saved = self._insert_at
        self._insert_at = self.nodes.index(node)
        try:
            yield
        finally:
            self._insert_at = saved

    @contextlib.contextmanager
    def inserting_after(self, node: Node) -> Iterator[None]:
        saved = self._insert_at
        self._insert_at = self.nodes.index(node) + 1
        try:
            yield
        finally:
            self._insert_at = saved

    # ---- mutation -------------------------------------------------------------------------
    def replace_all_uses_with(self, old: Value, new: Value) -> list[tuple[Node | None, int]]:
        """Point every use of `old` (and graph outputs) at `new`; returns what was touched.

        A graph output touched is reported as (None, output index)."""
        if old.type != new.type:
            raise VerifyError(f"cannot replace {old.type} with {new.type}")
        touched: list[tuple[Node | None, int]] = []
        for node, i in old.uses():
            node.set_input(i, new)
            touched.append((node, i))
        for i, v in enumerate(self.outputs):
            if v is old:
                self.outputs[i] = new
                touched.append((None, i))
        return touched

    def remove(self, node: Node) -> None:
        """Remove a node whose outputs are unused; refuses one still in use."""
        for v in node.outputs:
            if v._uses or any(o is v for o in self.outputs):
                raise VerifyError(f"cannot remove {node.describe()}: its result is still used")
        node._drop_inputs()
        self.nodes.remove(node)
        node.graph = None

    def replace_node(self, node: Node, new_values: list[Value]) -> None:
        """Replace each output of `node` by the matching new value, then remove `node`."""
        for old, new in zip(node.outputs, new_values, strict=True):
            self.replace_all_uses_with(old, new)
        self.remove(node)

    # ---- queries --------------------------------------------------------------------------
    def constants(self) -> list[Value]:
        """Constants used by nodes or outputs, in first-use order."""
        seen: dict[int, Value] = {}
        for node in self.nodes:
            for v in node.inputs:
                if v.is_const and id(v) not in seen:
                    seen[id(v)] = v
        for v in self.outputs:
            if v.is_const and id(v) not in seen:
                seen[id(v)] = v
        return list(seen.values())

    def input(self, name: str) -> Value:
        for v in self.inputs:
            if v.name == name:
                return v
        raise KeyError(name)

    def topo_sort(self) -> None:
        """Re-order `nodes` topologically (stable: keeps the current order where it can)."""
        position = {id(n): i for i, n in enumerate(self.nodes)}
        indegree = {id(n): 0 for n in self.nodes}
        for n in self.nodes:
            for v in n.inputs:
                p = v.producer()
                if p is not None and id(p) in indegree:
                    indegree[id(n)] += 1
        import heapq
        ready = [(position[id(n)], n) for n in self.nodes if indegree[id(n)] == 0]
        heapq.heapify(ready)
        order: list[Node] = []
        while ready:
            _, n = heapq.heappop(ready)
            order.append(n)
            for out in n.outputs:
                for user, _ in out._uses:
                    if id(user) in indegree:
                        indegree[id(user)] -= 1
                        if indegree[id(user)] == 0:
                            heapq.heappush(ready, (position[id(user)], user))
        if len(order) != len(self.nodes):
            raise VerifyError("the graph has a cycle")
        self.nodes = order

    def copy(self) -> "Graph":
        """A deep copy (constant payloads are shared: they are read-only)."""
        g = Graph(self.name)
        vmap: dict[int, Value] = {}

        def mapped(v: Value) -> Value:
            if id(v) not in vmap:
                if not v.is_const:
                    raise VerifyError(f"value {v.type} is used but never defined")
                c = Value(v.type, const=v.const)
                c.placeholder_hash = v.placeholder_hash
                vmap[id(v)] = c
            return vmap[id(v)]

        for v in self.inputs:
            vmap[id(v)] = g.add_input(v.name, v.type)
        for n in self.nodes:
            new = g.add(n.op, [mapped(v) for v in n.inputs], n.attrs, n.origin,
                        out_types=[o.type for o in n.outputs])
            for o, no in zip(n.outputs, new.outputs):
                vmap[id(o)] = no
        g.set_outputs([mapped(v) for v in self.outputs], self.output_names)
        return g

    def __str__(self) -> str:
        from .text import print_ir
        return print_ir(self)
