"""ONNX import: a ModelProto (or file) to an edgec Graph.

Each ONNX op type has a converter registered with `@onnx_op` beside the ops it produces
(`edgec.ops.*`). The importer
- checks the model before converting any node (`load_model`, which `edgec inspect` shares): the
  file (a truncated or malformed one is a `ModelError`); the declared size of every constant
  (initializers, Constant nodes), before any data is read; external data only from inside the
  model's own directory; the opset; the graph's structure (at least one output, every name
  defined once and before its use: a dangling input or a cycle is refused), and that of every
  subgraph (If's branches, Loop's and Scan's body), which may also use the names of the scopes
  around it;
- imports subgraphs inline, with the walker of the main graph (`ImportContext.subgraph`; the
  If, Loop and Scan converters in `edgec.ops.control` say which cases they take);
- lists every unsupported op type with the nodes that use it (in subgraphs too), in one message
  (an op of another domain is supported when an importer is registered for `domain.OpType`, such
  as ONNX Runtime's com.microsoft.QLinearAdd; its converter checks its arity, which ONNX has no
  schema for), and the ops of ONNX's own domain that ONNX Runtime defines where ONNX does not
  (ORT_ONNX_DOMAIN: LayerNormalization before opset 17, SimplifiedLayerNormalization), checked
  against ORT's schema;
- fixes dynamic dims (a name or a negative dim_value such as -1) from `input_shapes`; refuses
  a dynamic dim left without a value (naming the `--input-shape` every such input needs), and
  a value that changes a static dim;
- treats initializers that also appear as graph inputs as constants;
- accepts opsets MIN_OPSET..MAX_OPSET; older models are first converted to MIN_OPSET with
  `onnx.version_converter`. Every change to an existing op from opset 22 to 28 only adds dtypes
  (edgec rejects unsupported dtypes by name) or adds an attribute whose default keeps the
  opset-21 meaning; NEWER_ATTRS lists those attributes and a node that sets one to another
  value is refused;
- refuses any tensor with a negative dim or more than MAX_ELEMENTS elements, naming the node,
  and constants made at import (Range, EyeLike) that would take all constants together past
  MAX_CONSTANT_BYTES, before allocating them;
- omits a node's optional outputs that nothing reads, nor any subgraph (Dropout's mask in old
  exports, say), never a variadic or required one (an unread second piece of a Split still fixes
  the first's size);
- turns an unexpected exception inside a converter (a malformed attribute, say) into an
  `UnsupportedError` naming the ONNX node;
- folds integer computations on constants as it goes (shape arithmetic such as
  Shape -> Gather -> Concat -> Reshape), and tiny float ones (Shape -> Cast -> Mul -> Floor), so
  that shape operands become attributes; folding of weights is left to `fold-constants`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgecError, ModelError, ShapeError, UnsupportedError
from .ir import DTYPES, MAX_CONSTANT_BYTES, MAX_ELEMENTS, Graph, TensorType, Value, gc_paused, is_float
from .ops import ONNX_CONVERTERS, get_op, onnx_key

MIN_OPSET, MAX_OPSET = 11, 28
# Attributes added to existing ops after opset 21, and the value that keeps the opset-21 meaning.
NEWER_ATTRS = {
    ("Cast", "round_mode"): "up",  # opset 24, float8e8m0 only
    ("CastLike", "round_mode"): "up",  # opset 24
    ("DequantizeLinear", "output_dtype"): 0,  # opset 23
    ("QuantizeLinear", "precision"): 0,  # opset 23
    ("Range", "stash_type"): 1,  # opset 27, float16 accumulation
    ("SpaceToDepth", "mode"): "DCR",  # opset 28
}
STATIC_SHAPES = ("edgec compiles static shapes only; fix the model's input shapes with --input-shape so "
                 "it can be computed")
FOLD_LIMIT = 1 << 16  # elements: larger integer results are not folded at import
FLOAT_FOLD_LIMIT = 64  # float results up to this size fold too (float shape arithmetic, scales)

# ONNX TensorProto data type -> edgec dtype name
ONNX_DTYPES = {1: "f32", 2: "u8", 3: "i8", 4: "u16", 5: "i16", 6: "i32", 7: "i64", 9: "bool",
               10: "f16", 11: "f64", 12: "u32", 13: "u64"}
ONNX_DTYPE_OF = {v: k for k, v in ONNX_DTYPES.items()}


class ImportContext:
    """What a converter sees: the graph being built, the opset, and helpers."""

    def __init__(self, graph: Graph, opset: int):
        self.graph = graph
        self.opset = opset
        self.node: Any = None  # the ONNX NodeProto being converted
        self.origin: str = ""
        self.env: Any = {}  # ONNX name -> Value in the scope being converted (a ChainMap in a subgraph)
        self.constant_bytes = 0  # of the constants made through `const` so far

    def fail(self, message: str) -> UnsupportedError:
        """An error naming the ONNX node being converted."""
        return UnsupportedError(f"ONNX node '{self.origin}' ({self.node.op_type}): {message}")

    def emit(self, op: str, inputs: list[Value], attrs: dict[str, Any] | None = None) -> list[Value]:
        """Add an edgec node for the current ONNX node; integer results of constants fold."""
        try:
            node = self.graph.add(op, inputs, attrs, origin=[self.origin])
        except EdgecError as e:
            raise self.fail(str(e)) from None
        for o in node.outputs:
            self.check_size(o.type.shape)
        if all(v.is_const for v in inputs) and all(
                o.type.size <= (FLOAT_FOLD_LIMIT if is_float(o.type.dtype) else FOLD_LIMIT) for o in node.outputs):
            results = get_op(op).run([v.const_value() for v in inputs], node.attrs)
            consts = [self.graph.const(np.asarray(r, dtype=o.type.np_dtype).reshape(o.type.shape))
                      for r, o in zip(results, node.outputs)]
            self.graph.remove(node)
            return consts
        return node.outputs

    def emit1(self, op: str, inputs: list[Value], attrs: dict[str, Any] | None = None) -> Value:
        return self.emit(op, inputs, attrs)[0]

    def check_size(self, shape, dtype: str | None = None) -> None:
        """Refuse a result of this node, before anything is allocated, with a negative dim or more
        than MAX_ELEMENTS elements; with `dtype`, a constant about to be made (by `const`), also
        when it would take all constants together past MAX_CONSTANT_BYTES."""
        shape = [int(d) for d in shape]
        count = math.prod(shape)
        where = f"ONNX node '{self.origin}' ({self.node.op_type})"
        if any(d < 0 for d in shape) or count > MAX_ELEMENTS:
            raise ShapeError(f"{where} gives a tensor of shape {shape}, which has a negative dim or "
                             f"more than {MAX_ELEMENTS} elements")
        nbytes = count * DTYPES[dtype].itemsize if dtype else 0
        if dtype and self.constant_bytes + nbytes > MAX_CONSTANT_BYTES:
            raise ShapeError(f"{where} gives a constant {dtype}{shape} of {nbytes} bytes, which takes "
                             f"the model's constants past edgec's limit of {MAX_CONSTANT_BYTES} bytes")

    def const(self, array: Any, dtype: str | None = None) -> Value:
        v = self.graph.const(array, dtype)
        self.constant_bytes += v.const.nbytes
        return v

    def constant_of(self, value: Value | None, what: str, why: str = STATIC_SHAPES) -> np.ndarray:
        """The constant behind an input that edgec needs at compile time (a shape, axes, ...);
        `why` says in the error why it must be one and what to do."""
        if value is None:
            raise self.fail(f"input '{what}' is missing")
        if not value.is_const:
            err = self.fail(f"input '{what}' must be a constant: {why}")
            # The graph input it is computed from, if any: the ONNX backend binds such inputs at
            # their first run.
            err.needs_constant = self._shape_input_behind(value)
            raise err
        return value.const_value()

    def _shape_input_behind(self, value: Value) -> str | None:
        """The name of the graph input `value` is (any dtype: the input is used as a shape-like
        operand), or is computed from when every graph input it depends on is an integer tensor
        (a size or shape fed as an input, as in Range(0, size) or Pad(x, Concat(shape - Shape(x),
        ...))); None when a float or bool input (data) is among them."""
        inputs = {id(v): v for v in self.graph.inputs}
        if id(value) in inputs:
            return value.name
        found: list[Value] = []
        seen: set[int] = set()
        todo = [value]
        while todo:
            v = todo.pop()
            if id(v) in seen or v.is_const:
                continue
            seen.add(id(v))
            if id(v) in inputs:
                found.append(v)
            elif v.producer() is not None:
                todo.extend(v.producer().inputs)
        if not found or any(v.type.dtype == "bool" or is_float(v.type.dtype) for v in found):
            return None
        return found[0].name

    def subgraph(self, gp, inputs: list[Value], name: str) -> list[Value]:
        """Import subgraph `gp` (attribute `name` of the node being converted: If's branches,
        Loop's and Scan's body) inline into the graph, by the walker of the main graph: its formal
        inputs bound to `inputs`, its initializers made constants, and every other name it reads
        resolved in the scopes around it (captured outer values, also from nested subgraphs).
        Its nodes' origins are `<this node>/<name>/<their own>`. Returns its outputs' values."""
        from collections import ChainMap
        if len(inputs) != len(gp.input):
            raise self.fail(f"its subgraph '{name}' takes {len(gp.input)} inputs; the node gives it {len(inputs)}")
        node, origin, outer = self.node, self.origin, self.env
        env = ChainMap({}, outer)
        for t in gp.initializer:
            env[t.name] = self.const(_tensor_array(t))
        for formal, v in zip(gp.input, inputs):
            env[formal.name] = v
        try:
            _convert_nodes(self, gp, env, f"{origin}/{name}/")
        finally:
            self.node, self.origin, self.env = node, origin, outer
        missing = [o.name for o in gp.output if o.name not in env]
        if missing:
            raise self.fail(f"output '{missing[0]}' of its subgraph '{name}' is an output that edgec does not "
                            "compute for its node")
        return [env[o.name] for o in gp.output]


def subgraphs(node) -> list[tuple[str, Any]]:
    """(attribute name, GraphProto) for each subgraph a node's attributes hold (If's branches,
    Loop's and Scan's body)."""
    out = []
    for a in node.attribute:
        if a.type == 5:  # GRAPH
            out.append((a.name, a.g))
        elif a.type == 10:  # GRAPHS
            out.extend((a.name, g) for g in a.graphs)
    return out


def walk_nodes(gp, prefix: str = ""):
    """(node, name) for every node of `gp` and, after each node, of the subgraphs it holds, in
    order; name is the node's name or #index in its own graph, after the names of the nodes and
    attributes that hold it (`loop/body/#0`)."""
    for i, n in enumerate(gp.node):
        name = prefix + (n.name or f"#{i}")
        yield n, name
        for attr, sub in subgraphs(n):
            yield from walk_nodes(sub, f"{name}/{attr}/")


def _read_model(model: Any):
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model, onnx.ModelProto):
        return model, None
    path = Path(model)
    try:
        if not path.is_file():
            raise ModelError(f"{path}: no such model file")
        data = path.read_bytes()
    except (OSError, ValueError) as e:  # unreadable, a name too long or holding a NUL
        raise ModelError(f"{path}: cannot read the model file ({e})") from None
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: not a valid ONNX file ({type(e).__name__}: {e}); "
                         "the file may be truncated or not an ONNX model") from None
    if not proto.HasField("graph") or not proto.graph.node and not proto.graph.output:
        raise ModelError(f"{path}: the file holds no ONNX graph; it may be truncated or not an ONNX model")
    return proto, path.resolve().parent


def _dtype_of(code: int, what: str) -> str:
    """The edgec dtype of ONNX data type `code`; `what` names its holder ("input 'x'")."""
    if code not in ONNX_DTYPES:
        raise UnsupportedError(f"{what} has ONNX data type {code}, which edgec does not support "
                               f"(supported: {', '.join(ONNX_DTYPE_OF)})")
    return ONNX_DTYPES[code]


def _file_tensors(proto):
    """(what, tensor) for every tensor the file holds: initializers and node attributes."""
    from onnx.external_data_helper import _get_all_tensors
    initializers = {t.name for t in proto.graph.initializer}
    for t in _get_all_tensors(proto):
        yield (f"initializer '{t.name}'" if t.name in initializers
               else f"constant tensor '{t.name}' (a node attribute)"), t


def tensor_size(tensor, what: str = "") -> tuple[int, int]:
    """(elements, bytes) of a TensorProto by its declared dims and data type, read without its
    data; a negative dim, more than MAX_ELEMENTS elements or an unknown data type is refused."""
    what = what or f"initializer '{tensor.name}'"
    dtype = _dtype_of(tensor.data_type, what)
    count = math.prod(tensor.dims)
    if any(d < 0 for d in tensor.dims) or count > MAX_ELEMENTS:
        raise ModelError(f"{what} has shape {list(tensor.dims)}, which has a negative dim or more "
                         f"than {MAX_ELEMENTS} elements")
    return count, count * DTYPES[dtype].itemsize


def _check_constants(proto) -> None:
    """Every tensor the file holds (initializers, node attributes), by its declared size before
    any data is read: each as `tensor_size` checks, all together at most MAX_CONSTANT_BYTES."""
    total = sum(tensor_size(t, what)[1] for what, t in _file_tensors(proto))
    if total > MAX_CONSTANT_BYTES:
        raise ModelError(f"the model's constants take {total} bytes, more than edgec's limit of "
                         f"{MAX_CONSTANT_BYTES} bytes ({MAX_CONSTANT_BYTES >> 30} GiB)")


def _load_external(proto, base_dir: Path | None) -> None:
    from onnx.external_data_helper import uses_external_data

    for what, tensor in _file_tensors(proto):
        if not uses_external_data(tensor):
            continue
        if base_dir is None:
            raise ModelError(f"{what} uses external data; pass the model as a "
                             "file path so edgec can read its data files")
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location:
            raise ModelError(f"{what} uses external data but names no location")
        if "\0" in location:
            raise ModelError(f"{what}: external data location {location!r} holds a NUL character, "
                             "which no file name can")
        try:
            target = (base_dir / location).resolve()
            if os.path.isabs(location) or base_dir not in target.parents:
                raise ModelError(f"{what} points to external data '{location}' outside "
                                 f"the model's directory {base_dir}; edgec reads data files only from there")
            if not target.is_file():
                raise ModelError(f"{what}: external data file '{location}' is missing")
            file_size = target.stat().st_size
        except OSError as e:  # a name too long, a symlink loop
            raise ModelError(f"{what}: cannot read external data file '{location}' ({e})") from None
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else file_size - offset
        except ValueError:
            raise ModelError(f"{what}: external data offset/length "
                             f"{info.get('offset')!r}/{info.get('length')!r} are not integers") from None
        if offset < 0 or length < 0 or offset + length > file_size:
            raise ModelError(f"{what}: external data offset {offset} and length "
                             f"{length} lie outside the file '{location}'")
        nbytes = tensor_size(tensor, what)[1]
        if length != nbytes:
            raise ModelError(f"{what}: external data length {length} does not match the "
                             f"{nbytes} bytes of its shape {list(tensor.dims)}")
        with open(target, "rb") as f:
            f.seek(offset)
            raw = f.read(length)
        tensor.raw_data = raw
        del tensor.external_data[:]
        tensor.data_location = 0


def _tensor_array(tensor) -> np.ndarray:
    from onnx import numpy_helper
    dtype = _dtype_of(tensor.data_type, f"initializer '{tensor.name}'")
    try:
        arr = numpy_helper.to_array(tensor)
    except Exception as e:  # noqa: BLE001 - protobuf content is untrusted
        raise ModelError(f"initializer '{tensor.name}' is malformed: {e}") from None
    return np.array(arr, dtype=DTYPES[dtype], order="C")


SHAPE_FORM = "expected NAME=D0,D1,... with positive integer dims, such as input=1,3,224,224"


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`name=1,3,224,224` -> ('name', (1, 3, 224, 224)); the CLI's --input-shape. `name=` is a
    scalar; an empty, zero, negative or non-integer dim is refused."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise ShapeError(f"--input-shape {text!r}: {SHAPE_FORM}")
    pieces = [d.strip() for d in dims.split(",")] if dims.strip() else []
    for i, d in enumerate(pieces):
        if not d.isdecimal() or int(d) == 0:
            shown = repr(d) if d else "empty"
            raise ShapeError(f"--input-shape {text!r}: dim {i} is {shown}; {SHAPE_FORM}")
    return name, tuple(int(d) for d in pieces)


def _attr_values(node) -> dict[str, Any]:
    from onnx import helper
    out = {}
    for a in node.attribute:
        if a.type == 5:  # GRAPH: the converter imports it with ctx.subgraph
            out[a.name] = a.g
            continue
        if a.type in (10, 11, 12):  # GRAPHS, SPARSE_TENSOR, SPARSE_TENSORS
            raise UnsupportedError(f"ONNX node '{node.name or node.op_type}' ({node.op_type}): "
                                   f"attribute '{a.name}' holds a list of graphs or a sparse tensor, not supported")
        try:
            v = helper.get_attribute_value(a)
        except Exception as e:  # noqa: BLE001 - protobuf content is untrusted
            raise ModelError(f"ONNX node '{node.name or node.op_type}' ({node.op_type}): attribute "
                             f"'{a.name}' is malformed ({e})") from None
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8", "replace") for x in v]
        elif a.type == 4:  # TENSOR
            v = _tensor_array(v)
        out[a.name] = v
    return out


def _without_unread_outputs(node, read: set[str], opset: int):
    """A copy of `node` whose optional outputs (by the ONNX schema) that nothing reads are
    omitted (""), so converters see Dropout's mask or MaxPool's indices as absent. Variadic
    outputs (Split's pieces) and required ones stay: each fixes the result's meaning even unread."""
    import onnx
    import onnx.defs
    try:
        formal = onnx.defs.get_schema(node.op_type, opset, "").outputs
    except onnx.defs.SchemaError:
        return node
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    for k in range(1, len(copy.output)):
        option = formal[min(k, len(formal) - 1)].option
        if copy.output[k] not in read and option == onnx.defs.OpSchema.FormalParameterOption.Optional:
            copy.output[k] = ""
    while len(copy.output) > 1 and not copy.output[-1]:
        copy.output.pop()
    return copy


# Ops of the ONNX domain that ONNX Runtime defines (its version 1) where ONNX does not (in the
# model's opset), as ORT-optimized models carry them: (inputs, outputs) as (least, most) of
# ORT's schema.
ORT_ONNX_DOMAIN = {"LayerNormalization": ((2, 3), (1, 3)), "SimplifiedLayerNormalization": ((2, 2), (1, 2))}


def _check_arity(ctx: ImportContext, node) -> None:
    """The node's input and output counts against the ONNX schema of the model's opset, or
    against ONNX Runtime's for an op of ORT_ONNX_DOMAIN that ONNX does not define in it."""
    import onnx.defs
    try:
        schema = onnx.defs.get_schema(node.op_type, ctx.opset, "")
        name = f"{node.op_type}-{schema.since_version}"
        ins, outs = (schema.min_input, schema.max_input), (schema.min_output, schema.max_output)
    except onnx.defs.SchemaError:
        if node.op_type not in ORT_ONNX_DOMAIN:
            raise ctx.fail(f"ONNX defines no {node.op_type} in opset {ctx.opset}") from None
        name = f"ONNX Runtime's {node.op_type}-1"
        ins, outs = ORT_ONNX_DOMAIN[node.op_type]
    n_in = len(node.input)
    while n_in and not node.input[n_in - 1]:  # trailing omitted optional inputs
        n_in -= 1
    if not ins[0] <= n_in <= ins[1]:
        raise ctx.fail(f"has {n_in} inputs; {name} takes {ins[0]} to {ins[1]}")
    if not outs[0] <= len(node.output) <= outs[1]:
        raise ctx.fail(f"has {len(node.output)} outputs; {name} gives {outs[0]} to {outs[1]}")


def _check_declared_output(o, computed: TensorType, fixed_shapes: bool) -> None:
    """A graph output's declared element type (and static dims, unless input shapes were
    overridden) must match what edgec computes."""
    if not o.type.HasField("tensor_type"):
        return
    tt = o.type.tensor_type
    if tt.elem_type and ONNX_DTYPES.get(tt.elem_type) != computed.dtype:
        declared = ONNX_DTYPES.get(tt.elem_type, f"ONNX data type {tt.elem_type}")
        raise ModelError(f"graph output '{o.name}' is declared {declared}, but the graph computes "
                         f"{computed} (a type mismatch in the model)")
    if fixed_shapes and tt.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) != computed.rank or any(d is not None and d != c for d, c in zip(dims, computed.shape)):
            shown = ["?" if d is None else d for d in dims]
            raise ShapeError(f"graph output '{o.name}' is declared with shape {shown}, but the graph "
                             f"computes {computed}")


def _upgrade(proto, opset: int):
    """A model older than MIN_OPSET, converted to MIN_OPSET with onnx.version_converter."""
    from onnx import version_converter
    try:
        return version_converter.convert_version(proto, MIN_OPSET)
    except Exception as e:  # noqa: BLE001 - the converter raises several kinds
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UnsupportedError(f"the model uses opset {opset}; edgec supports opsets {MIN_OPSET} to "
                               f"{MAX_OPSET}, and onnx.version_converter could not convert it to opset "
                               f"{MIN_OPSET} ({first})") from None


def _origin(node, index: int) -> str:
    """How messages name an ONNX node: its name, else its op type and position."""
    return node.name or f"{node.op_type}_{index}"


def _check_names_utf8(gp) -> None:
    """ONNX names are UTF-8 strings; protobuf hands a name that is not valid UTF-8 back as bytes."""
    named = [("graph", gp)] + [("initializer", t) for t in gp.initializer] + \
        [("input", v) for v in gp.input] + [("output", v) for v in gp.output]
    for i, n in enumerate(gp.node):
        if isinstance(n.name, bytes) or isinstance(n.op_type, bytes):
            raise ModelError(f"ONNX node #{i} has a name or op type that is not valid UTF-8 "
                             f"({bytes(n.name if isinstance(n.name, bytes) else n.op_type)!r}); "
                             "ONNX names must be UTF-8 text")
        named += [(f"an input of node #{i}", s) for s in n.input] + [(f"an output of node #{i}", s) for s in n.output]
    for what, item in named:
        name = item if isinstance(item, (str, bytes)) else item.name
        if isinstance(name, bytes):
            raise ModelError(f"the name of {what} is not valid UTF-8 ({name[:40]!r}); ONNX names must be "
                             "UTF-8 text")


def _check_graph(gp, outer: frozenset[str] | None = None, prefix: str = "") -> None:
    """The graph's structure: at least one output; every name defined once (initializers, inputs,
    node outputs) and before its use (a dangling input, a cycle or nodes out of topological order
    are refused); every graph output produced; inputs are tensors of a supported data type.
    The subgraphs its nodes hold are checked the same way, as the node's attribute `prefix`
    names them, where `outer` are the names of the scopes around them that they may read (their
    formal inputs are bound by the node, so their types are the node's business)."""
    where = f"subgraph '{prefix.rstrip('/')}'" if prefix else "the model"
    if not gp.output:
        raise ModelError(f"{where} has no outputs; an ONNX graph must declare at least one (graph.output)")
    _check_names_utf8(gp)
    defined: set[str] = set()
    for t in gp.initializer:
        if t.name in defined:
            raise ModelError(f"initializer name '{t.name}' is defined twice")
        defined.add(t.name)
    initializers = set(defined)
    for inp in gp.input:
        if inp.name in initializers:  # older exporters list initializers as inputs too: constants
            continue
        if inp.name in defined:
            raise ModelError(f"input name '{inp.name}' is defined twice")
        if outer is None:
            if not inp.type.HasField("tensor_type"):
                raise UnsupportedError(f"input '{inp.name}' is not a tensor")
            _dtype_of(inp.type.tensor_type.elem_type, f"input '{inp.name}'")
        defined.add(inp.name)
    outer = outer or frozenset()
    for i, n in enumerate(gp.node):
        for name in n.input:
            if name and name not in defined and name not in outer:
                raise ModelError(f"ONNX node '{prefix}{_origin(n, i)}' ({n.op_type}) uses '{name}', which no "
                                 "earlier node, input or initializer defines (a dangling input, a cycle "
                                 "or nodes out of topological order)")
        for attr, sub in subgraphs(n):
            _check_graph(sub, outer | defined, f"{prefix}{_origin(n, i)}/{attr}/")
        for name in n.output:
            if name in defined:
                raise ModelError(f"ONNX node '{prefix}{_origin(n, i)}' ({n.op_type}) defines '{name}', which is "
                                 "already defined (names must be unique)")
            if name:
                defined.add(name)
    for o in gp.output:
        if o.name not in defined and o.name not in outer:
            raise ModelError(f"{'graph' if not prefix else where} output '{o.name}' is not produced by any node")


def _convert_nodes(ctx: ImportContext, gp, env, prefix: str = "") -> None:
    """Convert the nodes of graph `gp` in order with their converters, reading their inputs from
    `env` (ONNX name -> Value) and defining their outputs there; `prefix` goes before their
    origins (a subgraph's nodes: `If_2/then_branch/`). The main graph and every subgraph
    (`ImportContext.subgraph`) go through here."""
    # Names read here or in the subgraphs of these nodes (captures): outputs to keep.
    read = {name for n, _ in walk_nodes(gp) for name in n.input} | {o.name for o in gp.output}
    ctx.env = env
    opset = ctx.opset
    for i, n in enumerate(gp.node):
        if any(name and name not in read for name in n.output[1:]) and n.domain in ("", "ai.onnx"):
            n = _without_unread_outputs(n, read, opset)
        ctx.node, ctx.origin = n, prefix + _origin(n, i)
        if n.domain in ("", "ai.onnx"):  # other domains' converters check their own arity
            _check_arity(ctx, n)
        attrs = _attr_values(n)
        for (op_type, name), default in NEWER_ATTRS.items():
            if n.op_type == op_type and attrs.get(name, default) != default:
                raise ctx.fail(f"attribute {name}={attrs[name]!r} is not supported (only {default!r})")
        for name in n.input:
            if name and name not in env:  # defined (load_model checked) but not computed
                raise ctx.fail(f"uses '{name}', an output that edgec does not compute for its node")
        node_inputs = [env[name] if name else None for name in n.input]
        try:
            outs = ONNX_CONVERTERS[onnx_key(n.domain, n.op_type)](ctx, n, node_inputs, attrs)
        except EdgecError:
            raise
        except Exception as e:  # noqa: BLE001 - a malformed node must not crash the import
            raise ctx.fail(f"the importer failed on this node ({type(e).__name__}: {e}); "
                           "its attributes or inputs may be malformed") from e
        env.update((name, v) for name, v in zip(n.output, outs) if name)


def load_model(model: Any) -> tuple[Any, int]:
    """Read and check an ONNX model (path or ModelProto) before any node is converted: the file,
    the declared size of its constants, its external data (read in), its opset and its graph's
    structure. Returns (ModelProto, opset). `import_onnx` and `edgec inspect` start here."""
    proto, base_dir = _read_model(model)
    _check_constants(proto)
    _load_external(proto, base_dir)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        if not proto.graph.node or any(n.domain in ("", "ai.onnx") for n in proto.graph.node):
            raise ModelError("the model declares no opset for the default ONNX domain")
        opset = MAX_OPSET  # only ops of other domains: they are listed as unsupported
    if opset > MAX_OPSET:
        raise UnsupportedError(f"the model uses opset {opset}; edgec supports opsets {MIN_OPSET} to "
                               f"{MAX_OPSET}. Convert it with onnx.version_converter to opset {MAX_OPSET}")
    _check_graph(proto.graph)
    return proto, opset


def _input_shape(inp, given) -> tuple[int, ...] | None:
    """The shape of graph input `inp`: its declared dims, with `given` (input_shapes) for the
    dynamic ones (a dim_param, no value, or a negative dim_value such as -1); None when a dynamic
    dim has no value or the input no shape. Refused: a 0 dim; `given` with a dim that is not a
    positive integer, of another rank, or changing a static dim."""
    tt = inp.type.tensor_type
    declared = None
    if tt.HasField("shape"):
        declared = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value == 0:
                raise ShapeError(f"input '{inp.name}' has dimension 0 (dim {i}); edgec needs positive "
                                 "sizes (empty tensors are not supported)")
            declared.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
    if given is None:
        if declared is None or None in declared:
            return None
        shape = tuple(declared)
    else:
        shape = tuple(given)
        flag = f"--input-shape {inp.name}={','.join(map(str, shape))}"
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ShapeError(f"{flag}: {SHAPE_FORM}")
        if declared is not None and len(declared) != len(shape):
            raise ShapeError(f"{flag} has rank {len(shape)}, the model's input has rank {len(declared)}")
        for i, (d, g) in enumerate(zip(declared or [], shape)):
            if d is not None and d != g:
                raise ShapeError(f"{flag}: dim {i} of input '{inp.name}' is {d} in the model, a static "
                                 f"size; only its dynamic dims can be set (give {d} there)")
    if math.prod(shape) > MAX_ELEMENTS:
        raise ShapeError(f"input '{inp.name}' has shape {list(shape)}, more than {MAX_ELEMENTS} "
                         "elements: too large")
    return tuple(int(d) for d in shape)


def _missing_shape(inp) -> tuple[str, str]:
    """(what the message says about an input without a full shape, the --input-shape value it
    needs: its static dims kept, Dk for each dynamic one)."""
    tt = inp.type.tensor_type
    if not tt.HasField("shape"):
        return f"input '{inp.name}' has no shape", f"{inp.name}=D0,D1,..."
    dims, dynamic = [], []
    for i, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(str(d.dim_value))
        else:
            dims.append(f"D{i}")
            shown = f"'{d.dim_param}'" if d.dim_param else str(d.dim_value) if d.HasField("dim_value") else "?"
            dynamic.append(f"{shown} (D{i})")
    plural = "s" if len(dynamic) > 1 else ""
    return (f"input '{inp.name}' has a dynamic dimension{plural} {', '.join(dynamic)}",
            f"{inp.name}={','.join(dims)}")


@gc_paused()
def import_onnx(model: Any, input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Import an ONNX model (path or ModelProto) into an edgec Graph.

    Its errors carry what `edgec inspect` reports instead of failing: an UnsupportedError for
    unsupported ops has `unsupported` (op type -> nodes), a ShapeError for dynamic dims without
    a value has `missing_shapes` (the --input-shape values needed)."""
    proto, opset = load_model(model)
    if opset < MIN_OPSET:
        proto, opset = _upgrade(proto, opset), MIN_OPSET
    gp = proto.graph
    input_shapes = dict(input_shapes or {})

    # Every unsupported op, at once (in subgraphs too).
    unsupported: dict[str, list[str]] = {}
    for n, name in walk_nodes(gp):
        key = onnx_key(n.domain, n.op_type)
        if key not in ONNX_CONVERTERS:
            unsupported.setdefault(key, []).append(name)
    if unsupported:
        parts = [f"{t} (nodes: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''})"
                 for t, names in sorted(unsupported.items())]
        err = UnsupportedError(f"the model uses {len(unsupported)} op type(s) edgec does not support: "
                               + "; ".join(parts))
        err.unsupported = unsupported
        raise err

    graph = Graph(gp.name or "main")
    ctx = ImportContext(graph, opset)
    env: dict[str, Value] = {t.name: ctx.const(_tensor_array(t)) for t in gp.initializer}
    inputs = [i for i in gp.input if i.name not in env]  # initializers listed as inputs are constants
    unknown = sorted(set(input_shapes) - {i.name for i in inputs})
    if unknown:
        raise ShapeError(f"--input-shape names {', '.join(unknown)}, which the model has no input of; "
                         f"its inputs: {', '.join(i.name for i in inputs)}")
    shapes = {i.name: _input_shape(i, input_shapes.get(i.name)) for i in inputs}
    unshaped = [i for i in inputs if shapes[i.name] is None]
    if unshaped:
        missing = [_missing_shape(i) for i in unshaped]
        err = ShapeError("; ".join(what for what, _ in missing) + "; give its shape"
                         + ("s" if len(missing) > 1 else "") + " with "
                         + " ".join(f"--input-shape {flag}" for _, flag in missing)
                         + " (input_shapes={" + ", ".join(f"{i.name!r}: (...)" for i in unshaped)
                         + "} from Python)")
        err.missing_shapes = [flag for _, flag in missing]
        raise err
    for inp in inputs:
        env[inp.name] = graph.add_input(inp.name, TensorType(ONNX_DTYPES[inp.type.tensor_type.elem_type],
                                                             shapes[inp.name]))

    _convert_nodes(ctx, gp, env)

    outputs = []
    for o in gp.output:
        if o.name not in env:
            raise ModelError(f"graph output '{o.name}' is an output that edgec does not compute for its node")
        _check_declared_output(o, env[o.name].type, fixed_shapes=not input_shapes)
        outputs.append(env[o.name])
    graph.set_outputs(outputs, [o.name for o in gp.output])
    from .verifier import verify
    verify(graph)
    return graph
