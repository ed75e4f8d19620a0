"""The edgec IR: a small, mutable, value-centred SSA graph.

- `TensorType`: dtype name (`f32`, `i64`, ...) and a static shape.
- `Value`: a tensor. A graph input, a constant (with a numpy payload) or a node result. It knows
  its producer and its uses; uses are kept in sync by `Node.set_input`, the only setter that
  rewires an input.
- `Node`: op name, inputs, attributes, outputs and `origin`, the ONNX node names it came from.
- `Graph`: inputs, outputs (with their user-facing names), nodes in topological order, and the
  mutation helpers passes use.

Every mutation helper costs O(1) (plus the node's own inputs and outputs), so a pass that
touches each node a bounded number of times stays linear in the graph's size: a value's uses are
an insertion-ordered dict, and the nodes a doubly linked list whose order keys (`Graph.order_key`)
compare positions without a search. `Graph.nodes` is a tuple snapshot of the current order
(rebuilt, in O(n), on the first read after a change): iterate it freely while mutating, and
assign `graph.nodes = [...]` to re-order.
"""

from __future__ import annotations

import contextlib
import gc
import math
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


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused inside the block (as it was, after): import,
    copies, pass pipelines and lowering allocate objects by the hundred thousand on a large
    graph, and every full collection walks all of them (at 20,000 nodes the collector took four
    fifths of a graph copy and a third of an -O2 pipeline). Nearly all garbage is freed by
    reference counting anyway; what needs the collector (a removed node and its results refer to
    each other) waits until the block ends, bounded by the nodes the block removes. Also a decorator: `@gc_paused()`."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
        return math.prod(self.shape)

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
        self._uses: dict[tuple[Node, int], None] = {}  # insertion-ordered, O(1) removal
        # A constant parsed from a dump that showed only its hash: prints the same, cannot run.
        self.placeholder_hash: str | None = None
        self._hash: tuple[np.ndarray, str] | None = None  # (payload, its content hash): see text.const_hash

    def producer(self) -> "Node | None":
        return self._producer

    def uses(self) -> list[tuple["Node", int]]:
        return list(self._uses)

    def num_uses(self) -> int:
        """len(uses()), without building the list."""
        return len(self._uses)

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
            v._uses[(self, len(self._inputs) - 1)] = None
        self.outputs: list[Value] = []
        for i, t in enumerate(out_types):
            v = Value(t)
            v._producer, v.index = self, i
            self.outputs.append(v)
        self.graph: Graph | None = None
        self._prev: Node | None = None  # neighbours and order key in the graph's node list
        self._next: Node | None = None
        self._order = 0

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
        del old._uses[(self, index)]
        self._inputs[index] = value
        value._uses[(self, index)] = None

    def _drop_inputs(self) -> None:
        for i, v in enumerate(self._inputs):
            del v._uses[(self, i)]
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
        self._first: Node | None = None
        self._last: Node | None = None
        self._snapshot: tuple[Node, ...] | None = ()
        self._anchor: Node | None = None  # `add` inserts before it; None appends

    # ---- the node list ----------------------------------------------------------------------
    _STRIDE = 1 << 32  # gap between order keys after a renumbering
    _STEP = 1 << 8  # key step of an insertion into a wide gap (leaves room for the next one)

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes in order, as a tuple (a snapshot: later changes do not alter it)."""
        if self._snapshot is None:
            out, n = [], self._first
            while n is not None:
                out.append(n)
                n = n._next
            self._snapshot = tuple(out)
        return self._snapshot

    @nodes.setter
    def nodes(self, order: Iterable[Node]) -> None:
        """Re-link the nodes in `order` (ownership, `node.graph`, is left as it is)."""
        self._first = self._last = None
        for n in order:
            n._prev, n._next = self._last, None
            if self._last is None:
                self._first = n
            else:
                self._last._next = n
            self._last = n
        self._renumber()

    def _renumber(self) -> None:
        n, key = self._first, 0
        while n is not None:
            n._order, key, n = key, key + self._STRIDE, n._next
        self._snapshot = None

    def _link_before(self, node: Node, anchor: Node | None) -> None:
        """Put `node` before `anchor` (at the end when None), with an order key between its
        neighbours' (renumbering all keys when they leave no room, which is rare)."""
        prev = self._last if anchor is None else anchor._prev
        node._prev, node._next = prev, anchor
        if prev is None:
            self._first = node
        else:
            prev._next = node
        if anchor is None:
            self._last = node
        else:
            anchor._prev = node
        if prev is None and anchor is None:
            node._order = 0
        elif anchor is None:
            node._order = prev._order + self._STRIDE
        elif prev is None:
            node._order = anchor._order - self._STRIDE
        else:
            gap = anchor._order - prev._order
            if gap < 2:
                self._renumber()
            else:
                node._order = prev._order + (self._STEP if gap > 2 * self._STEP else gap // 2)
        self._snapshot = None

    def _unlink(self, node: Node) -> None:
        prev, nxt = node._prev, node._next
        if prev is None:
            self._first = nxt
        else:
            prev._next = nxt
        if nxt is None:
            self._last = prev
        else:
            nxt._prev = prev
        node._prev = node._next = None
        self._snapshot = None

    @staticmethod
    def order_key(node: Node) -> int:
        """A key that sorts the nodes of one graph in graph order (`sorted(ns, key=Graph.order_key)`);
        O(1), valid until the graph is re-ordered (`graph.nodes = ...`, `topo_sort`)."""
        return node._order

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
        if self._anchor is not None and self._anchor.graph is not self:
            raise VerifyError(f"cannot insert before {self._anchor.describe()}: it was removed from the graph")
        node = Node(op, inputs, attrs, out_types, origin)
        node.graph = self
        self._link_before(node, self._anchor)
        return node

    @contextlib.contextmanager
    def inserting_before(self, node: Node) -> Iterator[None]:
        """Nodes added inside the block go before `node` (which must stay in the graph until the
        block ends), in the order they are added."""
        if node.graph is not self:
            raise VerifyError(f"cannot insert before {node.describe()}: it is not in this graph")
        saved = self._anchor
        self._anchor = node
        try:
            yield
        finally:
            self._anchor = saved

    @contextlib.contextmanager
    def inserting_after(self, node: Node) -> Iterator[None]:
        """Nodes added inside the block go after `node`, in the order they are added."""
        if node.graph is not self:
            raise VerifyError(f"cannot insert after {node.describe()}: it is not in this graph")
        saved = self._anchor
        self._anchor = node._next
        try:
            yield
        finally:
            self._anchor = saved

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
        if old in self.outputs:  # identity (Value has no __eq__), at C speed
            for i, v in enumerate(self.outputs):
                if v is old:
                    self.outputs[i] = new
                    touched.append((None, i))
        return touched

    def remove(self, node: Node) -> None:
        """Remove a node whose outputs are unused; refuses one still in use."""
        for v in node.outputs:
            if v._uses or v in self.outputs:
                raise VerifyError(f"cannot remove {node.describe()}: its result is still used")
        if node.graph is not self:
            raise VerifyError(f"cannot remove {node.describe()}: it is not in this graph")
        node._drop_inputs()
        self._unlink(node)
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

    @gc_paused()
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
