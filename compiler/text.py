"""The text format (`.eir`): a deterministic printer and a parser that round-trip.

    graph @main(%x: f32[1,3,8,8]) -> (%y: f32[1,4,8,8]) {
      %c0 = const f32[4,3,3,3] #9a1c0d3e7b2f4a61
      %c1 = const i64[2] [1,-1]
      %0 = conv(%x, %c0) {group=1, pads=[1,1,1,1]} : f32[1,4,8,8]  @"Conv_0"
      %1 = relu(%0) : f32[1,4,8,8]  @"Relu_1"
      return %1
    }

Node results are numbered `%0, %1, ...` and constants `%c0, %c1, ...` in print order, never
taken from object ids, so equal graphs print equal text. Attributes are sorted. Constants of at
most `INLINE_LIMIT` elements are written out; larger ones by shape and content hash. With
`full_constants=True` the larger ones also carry their bytes (`b64"..."`), so a parsed file runs;
parsed from a hash alone, a constant is a placeholder that prints the same and refuses to run.

Graph and value names that are not plain identifiers (`[A-Za-z_][A-Za-z0-9_.]*`), and value
names that look like printed ones (`0`, `c0`), print as JSON strings, `@"mod\u00e8le"`,
`%"my input"`: ASCII only, so any Python string (NUL, lone surrogates) prints as valid UTF-8
and parses back to itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from typing import Any

import numpy as np

from .errors import EdgecError, VerifyError
from .ir import DTYPES, MAX_CONSTANT_BYTES, MAX_ELEMENTS, MAX_RANK, Graph, TensorType, Value, is_float

INLINE_LIMIT = 8
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_RESERVED = re.compile(r"c?[0-9]+")


def const_hash(v: Value) -> str:
    """The content hash of a constant, computed once per read-only payload (they all are, unless
    made by hand), so printing and comparing graphs do not hash the weights over and over."""
    if v.placeholder_hash is not None:
        return v.placeholder_hash
    arr = v.const_value()
    if v._hash is not None and v._hash[0] is arr:
        return v._hash[1]
    h = hashlib.sha256(f"{v.type}".encode())
    h.update(arr.tobytes())
    digest = h.hexdigest()[:16]
    if not arr.flags.writeable:
        v._hash = (arr, digest)
    return digest


def _frozen(value: Any) -> Any:
    """An attribute value as a comparable, immutable, tagged tuple (`_thawed` undoes it)."""
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_frozen(x) for x in value))
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    return (type(value).__name__, value)


def _thawed(frozen: tuple) -> Any:
    if frozen[0] == "list":
        return [_thawed(x) for x in frozen[1]]
    if frozen[0] == "array":
        return np.frombuffer(frozen[3], dtype=frozen[1]).reshape(frozen[2]).copy()
    return frozen[1]


def fingerprint(graph: Graph, payloads: list | None = None) -> tuple:
    """What `print_ir` shows (names, order, ops, wiring, attributes, types, origins, constants
    by number and content hash) as a tuple: two graphs print the same when their fingerprints
    are equal, and it costs a fraction of printing. `payloads`, when given, receives each
    constant's array (None for a placeholder) in print order: with the fingerprint, all that
    `from_fingerprint` needs to rebuild the graph (the pass manager keeps them instead of a copy
    of the graph, for the reproducer of a failing pass).

    A value is referred to as `-1 - i` (graph input i), `k` (the k-th node result, in order),
    `("const", k, type, hash)` (the k-th constant, `%ck` in print) or None (not defined before
    its use)."""
    number: dict[int, Any] = {id(v): -1 - i for i, v in enumerate(graph.inputs)}
    consts = 0

    def ref(v: Value) -> Any:
        nonlocal consts
        r = number.get(id(v))
        if r is None and v.is_const:
            r = number[id(v)] = ("const", consts, v.type, const_hash(v))
            consts += 1
            if payloads is not None:
                payloads.append(v.const)
        return r

    nodes, counter = [], 0
    for node in graph.nodes:
        attrs = tuple((a, _frozen(node.attrs[a])) for a in sorted(node.attrs)) if node.attrs else ()
        nodes.append((node.op, tuple(map(ref, node.inputs)), attrs, tuple(o.type for o in node.outputs),
                      node.origin))
        for o in node.outputs:
            number[id(o)] = counter
            counter += 1
    return (graph.name, tuple((v.name, v.type) for v in graph.inputs), tuple(nodes),
            tuple(graph.output_names), tuple(map(ref, graph.outputs)))


def from_fingerprint(fp: tuple, payloads: list) -> Graph:
    """The graph a `fingerprint` was taken of, with the `payloads` it collected (shared, as in
    `Graph.copy`); a value that was not defined before its use is refused."""
    name, inputs, nodes, output_names, outputs = fp
    graph = Graph(name)
    params = [graph.add_input(n, t) for n, t in inputs]
    results: list[Value] = []
    consts: dict[int, Value] = {}

    def value(r: Any) -> Value:
        if r is None:
            raise VerifyError("a value is used before it is defined")
        if isinstance(r, tuple):
            _, k, type, digest = r
            if k not in consts:
                consts[k] = Value(type, const=payloads[k])
                consts[k].placeholder_hash = digest if payloads[k] is None else None
            return consts[k]
        return params[-1 - r] if r < 0 else results[r]

    for op, args, attrs, types, origin in nodes:
        node = graph.add(op, [value(r) for r in args], {a: _thawed(f) for a, f in attrs}, origin,
                         out_types=list(types))
        results.extend(node.outputs)
    graph.set_outputs([value(r) for r in outputs], list(output_names))
    return graph


def _input_name(name: str) -> str:
    if _IDENT.fullmatch(name) and not _RESERVED.fullmatch(name):
        return "%" + name
    return "%" + json.dumps(name)


def _graph_name(name: str) -> str:
    return "@" + (name if _IDENT.fullmatch(name) else json.dumps(name))


def _scalar(x: Any, dtype: str) -> str:
    if dtype in ("f16", "f32", "f64"):
        return str(DTYPES[dtype].type(x))
    return str(int(x))


def _attr(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_attr(x) for x in value) + "]"
    return str(int(value))


def node_names(graph: Graph) -> dict[int, str]:
    """{id(node): "%N"}, where `%N` is the node's first result as `print_ir` numbers it (results
    are numbered in node order). Reports, overlays and the manifest name nodes this way."""
    names, counter = {}, 0
    for node in graph.nodes:
        names[id(node)] = f"%{counter}"
        counter += len(node.outputs)
    return names


def print_ir(graph: Graph, full_constants: bool = False) -> str:
    names: dict[int, str] = {}
    for v in graph.inputs:
        names[id(v)] = _input_name(v.name)
    lines = []
    for i, v in enumerate(graph.constants()):
        names[id(v)] = f"%c{i}"
        if v.type.size <= INLINE_LIMIT and v.placeholder_hash is None:
            body = "[" + ",".join(_scalar(x, v.type.dtype) for x in v.const_value().reshape(-1)) + "]"
        else:
            body = f"#{const_hash(v)}"
            if full_constants and v.placeholder_hash is None:
                raw = v.const_value().tobytes()
                body += ' b64"' + base64.b64encode(raw).decode() + '"'
        lines.append(f"  %c{i} = const {v.type} {body}")
    counter = 0
    for node in graph.nodes:
        outs = []
        for o in node.outputs:
            names[id(o)] = f"%{counter}"
            outs.append(f"%{counter}")
            counter += 1
        args = ", ".join(names.get(id(v), "%<undefined>") for v in node.inputs)
        text = f"  {', '.join(outs)} = {node.op}({args})"
        if node.attrs:
            text += " {" + ", ".join(f"{k}={_attr(node.attrs[k])}" for k in sorted(node.attrs)) + "}"
        types = [str(o.type) for o in node.outputs]
        text += " : " + (types[0] if len(types) == 1 else "(" + ", ".join(types) + ")")
        if node.origin:
            text += "  @" + ",".join(json.dumps(o) for o in node.origin)
        lines.append(text)
    params = ", ".join(f"{names[id(v)]}: {v.type}" for v in graph.inputs)
    results = ", ".join(f"{_input_name(n)}: {v.type}" for n, v in zip(graph.output_names, graph.outputs))
    ret = ", ".join(names.get(id(v), "%<undefined>") for v in graph.outputs)
    return "\n".join([f"graph {_graph_name(graph.name)}({params}) -> ({results}) {{", *lines,
                      f"  return {ret}", "}"]) + "\n"


# ---- parser ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<b64>b64"[A-Za-z0-9+/=]*")
  | (?P<var>%(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.]+))
  | (?P<gname>@[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<hash>\#[0-9a-f]+)
  | (?P<arrow>->)
  | (?P<num>[-+]?(?:(?:inf|nan)(?![A-Za-z0-9_.])|[0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<punct>[()\[\]{},:=@])
""", re.VERBOSE)
_INT = re.compile(r"[-+]?[0-9]+")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_KIND_NAMES = {"num": "a number", "str": "a string", "var": "a %name", "ident": "a name", "gname": "@name",
               "arrow": "->", "b64": 'b64"..."'}


class _Tokens:
    def __init__(self, text: str, lineno: int):
        self.lineno, self.items, pos = lineno, [], 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise self.error(f"unexpected character {text[pos]!r}")
            if m.lastgroup != "ws":
                self.items.append((m.lastgroup, m.group()))
            pos = m.end()
        self.i = 0

    def error(self, message: str) -> VerifyError:
        return VerifyError(f"IR text line {self.lineno}: {message}")

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.i] if self.i < len(self.items) else None

    def next(self, kind: str | None = None, text: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (text and tok[1] != text):
            want = text or _KIND_NAMES.get(kind, kind) or "a token"
            raise self.error(f"expected {want}, found {tok[1] if tok else 'end of line'}")
        self.i += 1
        return tok[1]

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok and tok[1] == text:
            self.i += 1
            return True
        return False

    def done(self) -> None:
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()[1]!r}")

    def unquote(self, token: str) -> str:
        """The string a `"..."` token spells (JSON escapes)."""
        try:
            return json.loads(token)
        except ValueError as e:
            raise self.error(f"bad string {token}: {e.msg} (strings use JSON escapes)") from None

    def string(self) -> str:
        return self.unquote(self.next("str"))

    def var(self) -> tuple[str, str]:
        """A `%name` token: the key it is defined and looked up by, and the name it spells.

        `%c0` and `%"c0"` differ (a printed constant, an input named c0); two spellings of
        one JSON string are one name."""
        tok = self.next("var")
        if tok[1] != '"':
            return tok, tok[1:]
        name = self.unquote(tok[1:])
        return "%" + json.dumps(name), name

    def integer(self, text: str, low: int, high: int, what: str) -> int:
        """An integer token within [low, high] (a longer token is out of range, not converted)."""
        if not _INT.fullmatch(text):
            raise self.error(f"{what} must be an integer, found {text}")
        if len(text) > 24 or not low <= int(text) <= high:
            raise self.error(f"{what} {text[:40]} is out of range [{low}, {high}]")
        return int(text)

    def type(self) -> TensorType:
        """`dtype[d0,d1,...]`: at most MAX_RANK dims, non-negative integers, at most MAX_ELEMENTS
        elements in all."""
        dtype = self.next("ident")
        if dtype not in DTYPES:
            raise self.error(f"unknown dtype {dtype!r}")
        self.next(text="[")
        dims = []
        while not self.accept("]"):
            dims.append(self.integer(self.next("num"), 0, MAX_ELEMENTS, "dimension"))
            self.accept(",")
        if len(dims) > MAX_RANK:
            raise self.error(f"a {dtype} type has {len(dims)} dims, more than {MAX_RANK}")
        if math.prod(dims) > MAX_ELEMENTS:
            raise self.error(f"{dtype}[{','.join(map(str, dims))}] has more than {MAX_ELEMENTS} elements")
        return TensorType(dtype, tuple(dims))

    def attrs(self) -> dict[str, Any]:
        """An optional `{key=value, ...}` block; a key given twice is refused."""
        attrs: dict[str, Any] = {}
        if self.accept("{"):
            while not self.accept("}"):
                key = self.next("ident")
                if key in attrs:
                    raise self.error(f"attribute {key} is given twice")
                self.next(text="=")
                attrs[key] = self.value()
                self.accept(",")
        return attrs

    def value(self) -> Any:
        """An attribute value: a number, a string or a flat list of them (no op attribute is a
        nested list, so a `[` inside a list is refused: parsing never recurses)."""
        if not self.accept("["):
            return self.scalar()
        items = []
        while not self.accept("]"):
            if self.peek() == ("punct", "["):
                raise self.error("attribute lists do not nest: a value is a number, a string or a list of them")
            items.append(self.scalar())
            self.accept(",")
        return items

    def scalar(self) -> Any:
        kind, text = self.peek() or ("", "end of line")
        if kind == "str":
            return self.string()
        if kind != "num":
            raise self.error(f"expected a value, found {text!r}")
        self.next()
        if _INT.fullmatch(text):
            return self.integer(text, *_INT64, "an integer attribute")
        return float(text)

    def const_payload(self, ty: TensorType) -> np.ndarray:
        """`b64"..."`: exactly the bytes of `ty`, checked by length before decoding."""
        body = self.next("b64")[4:-1]
        nbytes = ty.size * ty.np_dtype.itemsize
        if len(body) != 4 * ((nbytes + 2) // 3):
            raise self.error(f"the b64 payload has {len(body)} characters; {ty} is {nbytes} bytes, "
                             f"{4 * ((nbytes + 2) // 3)} characters of base64")
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error as e:
            raise self.error(f"the b64 payload is not valid base64 ({e})") from None
        if len(raw) != nbytes:
            raise self.error(f"the b64 payload decodes to {len(raw)} bytes; {ty} is {nbytes} bytes")
        if ty.dtype == "bool" and not set(raw) <= {0, 1}:
            raise self.error("the b64 payload of a bool constant holds bytes other than 0 and 1")
        return np.frombuffer(raw, dtype=ty.np_dtype).reshape(ty.shape)

    def const_list(self, ty: TensorType) -> np.ndarray:
        """`[x0,x1,...]`: exactly `ty.size` numbers, each within the range of `ty.dtype`."""
        self.next(text="[")
        texts = []
        while not self.accept("]"):
            texts.append(self.next("num"))
            self.accept(",")
        if len(texts) != ty.size:
            raise self.error(f"{ty} has {ty.size} elements, the list gives {len(texts)}")
        if is_float(ty.dtype):
            wide = np.array([float(x) for x in texts], dtype=np.float64)
            with np.errstate(over="ignore"):
                arr = wide.astype(ty.np_dtype)
            for x, y in zip(texts, arr):
                if not np.isfinite(y) and "inf" not in x and "nan" not in x:
                    raise self.error(f"{x} is out of the range of {ty.dtype}")
        else:
            info = np.iinfo(ty.np_dtype) if ty.dtype != "bool" else None
            low, high = (int(info.min), int(info.max)) if info else (0, 1)
            arr = np.array([self.integer(x, low, high, f"{ty.dtype} value") for x in texts], dtype=ty.np_dtype)
        return arr.reshape(ty.shape)


def parse_ir(text: str) -> Graph:
    """Parse the text format back into a Graph; anything malformed raises VerifyError naming the line.

    Refused, besides syntax errors: a value defined twice (also a result named like an input),
    a missing or second `return`, anything but `}` after `return`, an attribute given twice,
    dims that are not non-negative integers, a type of more than MAX_RANK dims or MAX_ELEMENTS
    elements, constants of more than MAX_CONSTANT_BYTES bytes in all (checked before their payload
    is decoded), constant lists or payloads that do not fill their type, integer constants out
    of their dtype's range, finite float constants that overflow it. The result is verified."""
    from .ops import get_op

    lines = [(i + 1, ln) for i, ln in enumerate(text.split("\n")) if ln.strip() and not ln.strip().startswith("//")]
    if not lines:
        raise VerifyError("IR text is empty")
    lineno, header = lines[0]
    t = _Tokens(header, lineno)
    t.next("ident", "graph")
    graph = Graph(t.string() if t.accept("@") else t.next("gname")[1:])
    env: dict[str, Value] = {}
    defined_at: dict[str, int] = {}

    def define(key: str, v: Value, tk: _Tokens) -> None:
        if key in env:
            raise tk.error(f"{key} is defined twice (first on line {defined_at[key]})")
        env[key], defined_at[key] = v, tk.lineno

    t.next(text="(")
    while not t.accept(")"):
        key, name = t.var()
        t.next(text=":")
        define(key, graph.add_input(name, t.type()), t)
        t.accept(",")
    t.next("arrow")
    t.next(text="(")
    out_names, out_types = [], []
    while not t.accept(")"):
        out_names.append(t.var()[1])
        t.next(text=":")
        out_types.append(t.type())
        t.accept(",")
    t.next(text="{")
    t.done()

    def lookup(tk: _Tokens) -> Value:
        key, _ = tk.var()
        if key not in env:
            raise tk.error(f"{key} is used before it is defined")
        return env[key]

    finished = False
    returned_at = None
    const_bytes = 0
    for lineno, line in lines[1:]:
        t = _Tokens(line, lineno)
        if finished:
            raise t.error("text after the end of the graph")
        first = t.peek()
        if first == ("punct", "}"):
            t.next()
            t.done()
            if returned_at is None:
                raise t.error("the graph ends without a return line")
            finished = True
            continue
        if returned_at is not None:
            raise t.error(f"only the closing '}}' may follow the return line (line {returned_at})")
        if first == ("ident", "return"):
            t.next()
            rets = []
            while t.peek() is not None:
                rets.append(lookup(t))
                t.accept(",")
            if len(rets) != len(out_names):
                raise t.error(f"return gives {len(rets)} values, the header declares {len(out_names)}")
            for v, ty in zip(rets, out_types):
                if v.type != ty:
                    raise t.error(f"returned {v.type} where the header declares {ty}")
            graph.set_outputs(rets, out_names)
            returned_at = lineno
            continue
        results = [t.var()[0]]
        while t.accept(","):
            results.append(t.var()[0])
        t.next(text="=")
        op = t.next("ident")
        if op == "const":
            if len(results) != 1:
                raise t.error(f"a const line defines one value, not {len(results)}")
            ty = t.type()
            h = t.next()[1:] if t.peek() and t.peek()[0] == "hash" else None
            payload = h is None or (t.peek() is not None and t.peek()[0] == "b64")
            if payload:
                const_bytes += ty.size * ty.np_dtype.itemsize
                if const_bytes > MAX_CONSTANT_BYTES:
                    raise t.error(f"the constants hold more than {MAX_CONSTANT_BYTES} bytes in all")
            if not payload:
                v = Value(ty)
                v.placeholder_hash = h
            elif h is None:
                v = graph.const(t.const_list(ty), ty.dtype)
            else:
                v = graph.const(t.const_payload(ty), ty.dtype)
            t.done()
            define(results[0], v, t)
            continue
        try:
            opdef = get_op(op)
        except EdgecError as e:
            raise t.error(str(e)) from None
        t.next(text="(")
        inputs = []
        while not t.accept(")"):
            inputs.append(lookup(t))
            t.accept(",")
        attrs = t.attrs()
        t.next(text=":")
        if t.accept("("):
            types = []
            while not t.accept(")"):
                types.append(t.type())
                t.accept(",")
        else:
            types = [t.type()]
        origin = []
        if t.accept("@"):
            origin.append(t.string())
            while t.accept(","):
                origin.append(t.string())
        t.done()
        if len(types) != len(results):
            raise t.error(f"{len(results)} results but {len(types)} types")
        try:
            attrs = opdef.complete_attrs(attrs)
        except VerifyError as e:
            raise t.error(str(e)) from None
        node = graph.add(op, inputs, attrs, origin, out_types=types)
        for key, v in zip(results, node.outputs):
            define(key, v, t)
    if not finished:
        raise VerifyError("IR text ends before the closing '}'")
    from .verifier import verify
    verify(graph)
    return graph
