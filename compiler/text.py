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
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import numpy as np

from .errors import VerifyError
from .ir import DTYPES, Graph, TensorType, Value

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
    return "\n".join([f"graph @{graph.name}({params}) -> ({results}) {{", *lines,
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
  | (?P<num>[-+]?(?:inf|nan|[0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<punct>[()\[\]{},:=@])
""", re.VERBOSE)


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
            want = text or kind or "a token"
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

    def type(self) -> TensorType:
        dtype = self.next("ident")
        if dtype not in DTYPES:
            raise self.error(f"unknown dtype {dtype!r}")
        self.next(text="[")
        dims = []
        while not self.accept("]"):
            dims.append(int(self.next("num")))
            self.accept(",")
        return TensorType(dtype, tuple(dims))

    def attrs(self) -> dict[str, Any]:
        """An optional `{key=value, ...}` block."""
        attrs: dict[str, Any] = {}
        if self.accept("{"):
            while not self.accept("}"):
                key = self.next("ident")
                self.next(text="=")
                attrs[key] = self.value()
                self.accept(",")
        return attrs

    def value(self) -> Any:
        kind, text = self.peek() or ("", "")
        if text == "[":
            self.next()
            items = []
            while not self.accept("]"):
                items.append(self.value())
                self.accept(",")
            return items
        self.next()
        if kind == "str":
            return json.loads(text)
        if kind == "num":
            return float(text) if any(c in text for c in ".en") else int(text)
        raise self.error(f"expected a value, found {text!r}")


def _var_name(token: str) -> str:
    return token  # the token itself (quotes kept) is the key: %"c0" and %c0 differ


def _user_name(token: str) -> str:
    body = token[1:]
    return json.loads(body) if body.startswith('"') else body


def parse_ir(text: str) -> Graph:
    """Parse the text format back into a Graph."""
    from .ops import get_op

    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.strip().startswith("//")]
    if not lines:
        raise VerifyError("IR text is empty")
    lineno, header = lines[0]
    t = _Tokens(header, lineno)
    t.next("ident", "graph")
    graph = Graph(t.next("gname")[1:])
    env: dict[str, Value] = {}
    t.next(text="(")
    while not t.accept(")"):
        tok = t.next("var")
        t.next(text=":")
        env[_var_name(tok)] = graph.add_input(_user_name(tok), t.type())
        t.accept(",")
    t.next("arrow")
    t.next(text="(")
    out_names, out_types = [], []
    while not t.accept(")"):
        out_names.append(_user_name(t.next("var")))
        t.next(text=":")
        out_types.append(t.type())
        t.accept(",")
    t.next(text="{")
    t.done()

    def lookup(tok: str, tk: _Tokens) -> Value:
        if _var_name(tok) not in env:
            raise tk.error(f"{tok} is used before it is defined")
        return env[_var_name(tok)]

    finished = False
    for lineno, line in lines[1:]:
        t = _Tokens(line, lineno)
        if finished:
            raise t.error("text after the end of the graph")
        first = t.peek()
        if first == ("punct", "}"):
            finished = True
            continue
        if first == ("ident", "return"):
            t.next()
            rets = []
            while t.peek() is not None:
                rets.append(lookup(t.next("var"), t))
                t.accept(",")
            if len(rets) != len(out_names):
                raise t.error(f"return gives {len(rets)} values, the header declares {len(out_names)}")
            for v, ty in zip(rets, out_types):
                if v.type != ty:
                    raise t.error(f"returned {v.type} where the header declares {ty}")
            graph.set_outputs(rets, out_names)
            continue
        results = [t.next("var")]
        while t.accept(","):
            results.append(t.next("var"))
        t.next(text="=")
        op = t.next("ident")
        if op == "const":
            ty = t.type()
            if t.peek() and t.peek()[0] == "hash":
                h = t.next()[1:]
                if t.peek() and t.peek()[0] == "b64":
                    raw = base64.b64decode(t.next()[4:-1])
                    arr = np.frombuffer(raw, dtype=ty.np_dtype).reshape(ty.shape).copy()
                    v = graph.const(arr, ty.dtype)
                else:
                    v = Value(ty)
                    v.placeholder_hash = h
            else:
                flat = t.value()
                arr = np.array(flat, dtype=ty.np_dtype).reshape(ty.shape)
                v = graph.const(arr, ty.dtype)
            t.done()
            env[_var_name(results[0])] = v
            continue
        get_op(op)
        t.next(text="(")
        inputs = []
        while not t.accept(")"):
            inputs.append(lookup(t.next("var"), t))
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
            origin.append(json.loads(t.next("str")))
            while t.accept(","):
                origin.append(json.loads(t.next("str")))
        t.done()
        if len(types) != len(results):
            raise t.error(f"{len(results)} results but {len(types)} types")
        try:
            attrs = get_op(op).complete_attrs(attrs)
        except VerifyError as e:
            raise t.error(str(e)) from None
        node = graph.add(op, inputs, attrs, origin, out_types=types)
        for tok, v in zip(results, node.outputs):
            env[_var_name(tok)] = v
    if not finished:
        raise VerifyError("IR text ends before the closing '}'")
    from .verifier import verify
    verify(graph)
    return graph
