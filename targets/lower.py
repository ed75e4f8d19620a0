"""Lowering: an edgec Graph to a TVM Relax IRModule in which every computing node is one kernel.

Each node becomes a private Relax function marked `Primitive`, named after the node
(`kernel_names`: `k<N>_<op>`, N being the node's `%N` in the printed IR), whose body is the op's
lowering (`OpDef.lower`, one or more Relax ops); `main` takes the graph inputs in order, calls
one function per node and returns a tuple of the outputs. The CPU pipeline
(targets/schedules) legalizes the ops, passes the constants the bodies hold as arguments
(`lift_constants`) and lets TVM's FuseTIR turn each function into one PrimFunc of the same name:
no fusion or layout pass of TVM's decides anything, so the kernels of the built module are the
nodes of the final IR. A node whose lowering computes nothing (it returns an input or a
constant) costs no kernel; neither does a reshape of contiguous data, which TVM's VM lowering
turns into a view (`reshape`, `flatten`, `squeeze`, `unsqueeze` and the like).

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

from edgec import interrupt
from edgec.errors import EdgecError, VerifyError
from edgec.ir import DTYPES, Graph, Node, Value, gc_paused
from edgec.text import node_names
from edgec.ops import get_op

PRIMITIVE = "Primitive"  # the attribute FuseTIR looks for
KERNEL = "edgec.kernel"  # the node function's name: no two are structurally equal, so none is
# merged with another by the BlockBuilder's deduplication
MAX_LABEL = 40  # characters of the op part of a kernel name


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


def node_label(node: Node) -> str:
    """The op part of a node's kernel name: the op and a linear op's fused activation, or the
    steps of a fused_elementwise or fused body (`k7_conv_clip`, `k9_conv_add`); letters, digits
    and '_' only, at most MAX_LABEL characters."""
    def parts_of(op: str, attrs: dict) -> list[str]:
        return [op, str(attrs["activation"])] if attrs.get("activation") else [op]

    if node.op in ("fused_elementwise", "fused"):
        from edgec.ops.fused import parse_body
        steps = parse_body(node.attrs["body"], len(node.inputs), node.op == "fused")
        parts = [part for op, _, attrs in steps for part in parts_of(op, attrs)]
    else:
        parts = parts_of(node.op, node.attrs)
    label = re.sub(r"\W", "_", "_".join(parts))
    return label[:MAX_LABEL].rstrip("_")


def kernel_names(graph: Graph) -> dict[int, str]:
    """{id(node): kernel name} for the graph's nodes: `k<N>_<label>` where `%N` is the node's
    first result in `print_ir` (results are numbered in node order) and `<label>` is
    `node_label`. Unique and deterministic."""
    names = node_names(graph)
    return {id(node): f"k{names[id(node)][1:]}_{node_label(node)}" for node in graph.nodes}


VIEW_OPS = ("reshape", "flatten", "squeeze", "unsqueeze")  # the ops that may cost no kernel


def kernel_table(graph: Graph, built: list[str], schedules: dict[str, str | None],
                 code: dict[str, int] | None = None) -> dict[str, list[dict]]:
    """What the manifest says of the kernels: {"kernels": [{"name", "node" (`%N` in model.eir),
    "op", "origins", "schedule", "code_bytes" (with `code`: {kernel: bytes of machine code})}],
    "views": [{"node", "op", "origins"}]}, in node order. `built`:
    the PrimFuncs of the built module; `schedules`: {kernel: rule} (ApplySchedules' report). A
    node without a kernel is a view of its input (or computes nothing); a node whose ops FuseTIR
    could not combine has kernels `<name>__0`, `<name>__1`, ... (`fuse_tir`); every built kernel
    is a node's, else a bug in the lowering is reported."""
    names, numbers = kernel_names(graph), node_names(graph)
    parts: dict[str, list[str]] = {}  # node kernel name -> its kernels (itself, or its parts)
    for k in sorted(built, key=lambda k: (k.split("__")[0], int(k.split("__")[1]) if "__" in k else -1)):
        parts.setdefault(k.split("__")[0], []).append(k)
    table: dict[str, list[dict]] = {"kernels": [], "views": []}
    for node in graph.nodes:
        entry = {"node": numbers[id(node)], "op": node.op, "origins": list(node.origin)}
        mine = parts.pop(names[id(node)], [])
        table["kernels"].extend({"name": name, **entry, "schedule": schedules.get(name),
                                 **({"code_bytes": code[name]} if code and name in code else {})}
                                for name in mine)
        if not mine:
            table["views"].append(entry)
    stray = sorted(k for ks in parts.values() for k in ks)
    if stray:
        raise VerifyError(f"the built module has kernels that are no node's: {', '.join(stray)} "
                          "(a bug in edgec's lowering)")
    return table


def _check(node, expr: relax.Expr, expected) -> None:
    sinfo = expr.ty
    shape = tuple(int(d) for d in sinfo.shape) if sinfo.shape is not None else None
    dtype = str(sinfo.dtype)
    if shape != expected.shape or dtype != DTYPES[expected.dtype].name:
        raise VerifyError(f"{node.describe()}: the lowering produced {dtype}{list(shape or [])}, "
                          f"edgec inferred {expected} (a bug in the lowering of '{node.op}')")


def _constant(v: Value) -> relax.Expr:
    return relax.const(np.array(v.const_value(), order="C"), DTYPES[v.type.dtype].name)


def _lower_node(bb: relax.BlockBuilder, target: Any, node: Node, name: str):
    """Emit the node's function; (its GlobalVar or None, [for each output: ("call", index in the
    function's results) or ("param", input index) or ("const", relax constant)])."""
    opdef = get_op(node.op)
    if opdef.lower is None:
        raise EdgecError(f"{node.describe()}: op '{node.op}' has no lowering to TVM yet")
    params, args = [], []
    for i, v in enumerate(node.inputs):
        if v.is_const:
            args.append(_constant(v))
        else:
            params.append(relax.Var(f"p{i}", relax_type(v)))
            args.append(params[-1])
    ctx = LowerContext(bb, target)
    with bb.function(name, params, attrs={PRIMITIVE: True, KERNEL: name}, private=True):
        with bb.dataflow():
            try:
                result = opdef.lower(ctx, args, node.attrs, [o.type for o in node.outputs])
                if len(node.outputs) == 1 and not isinstance(result, (list, tuple)):
                    results = [result]
                elif isinstance(result, (list, tuple)):
                    results = list(result)
                else:
                    tup = bb.emit(result)
                    results = [relax.TupleGetItem(tup, i) for i in range(len(node.outputs))]
                results = [r if isinstance(r, (relax.Var, tvm.ir.expr.Constant)) else bb.emit(r) for r in results]
            except EdgecError:
                raise
            except Exception as e:  # noqa: BLE001 - TVM raises many kinds; name the node
                raise EdgecError(f"{node.describe()}: lowering to TVM failed: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
            for o, r in zip(node.outputs, results):
                _check(node, r, o.type)
            where, computed = [], []
            for r in results:
                same = [i for i, a in enumerate(args) if not node.inputs[i].is_const and r.same_as(a)]
                if same:
                    where.append(("param", same[0]))
                elif isinstance(r, tvm.ir.expr.Constant):
                    where.append(("const", r))
                else:
                    where.append(("call", len(computed)))
                    computed.append(r)
            out = bb.emit_output(computed[0] if len(computed) == 1 else relax.Tuple(computed or params[:1]))
        bb.emit_func_output(out)
    if not computed:
        return None, where  # nothing to compute: not called, removed with the dead code
    return bb.get().get_global_var(name), where


@gc_paused()
def lower_graph(graph: Graph, target: Any) -> tvm.IRModule:
    """Build the Relax module for `graph`: one Primitive function per node, and `main`."""
    bb = relax.BlockBuilder()
    names = kernel_names(graph)
    lowered = [(node, *_lower_node(bb, target, node, names[id(node)])) for node in graph.nodes]
    params = [relax.Var(_param_name(v.name, i), relax_type(v)) for i, v in enumerate(graph.inputs)]
    env: dict[int, relax.Expr] = {id(v): p for v, p in zip(graph.inputs, params)}

    def get(v: Value) -> relax.Expr:
        if id(v) not in env:
            env[id(v)] = _constant(v)
        return env[id(v)]

    with bb.function("main", params):
        with bb.dataflow():
            for node, gv, where in lowered:
                call = None
                if gv is not None:
                    call = bb.emit(relax.Call(gv, [get(v) for v in node.inputs if not v.is_const]))
                    computed = sum(kind == "call" for kind, _ in where)
                for o, (kind, what) in zip(node.outputs, where):
                    if kind == "param":
                        env[id(o)] = get(node.inputs[what])
                    elif kind == "const":
                        env[id(o)] = what
                    else:
                        env[id(o)] = call if computed == 1 else bb.emit(relax.TupleGetItem(call, what))
            out = bb.emit_output(relax.Tuple([get(v) for v in graph.outputs]))
        bb.emit_func_output(out)
    return bb.get()


def _is_primitive(func) -> bool:
    return isinstance(func, relax.Function) and func.attrs is not None and PRIMITIVE in func.attrs


@relax.expr_functor.mutator
class _LiftConstants(relax.PyExprMutator):
    """Each distinct constant of a function body -> a new parameter (`params`, `constants`)."""

    def __init__(self):
        super().__init__()
        self.constants: list = []
        self.params: list[relax.Var] = []

    def visit_generic_const_(self, c):  # noqa: D102
        for k, known in enumerate(self.constants):
            if known.same_as(c):
                return self.params[k]
        self.constants.append(c)
        self.params.append(relax.Var(f"c{len(self.params)}", c.ty))
        return self.params[-1]


@relax.expr_functor.mutator
class _PassConstants(relax.PyExprMutator):
    """Calls of the functions in `new` ({name: (new GlobalVar, constants)}) pass the constants."""

    def __init__(self, new: dict):
        super().__init__()
        self.new = new

    def visit_call_(self, call):  # noqa: D102
        call = super().visit_call_(call)
        if isinstance(call.op, relax.GlobalVar) and call.op.name_hint in self.new:
            gv, constants = self.new[call.op.name_hint]
            return relax.Call(gv, [*call.args, *constants])
        return call


@tvm.transform.module_pass(opt_level=0, name="edgec.LiftConstants")
def lift_constants(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """The constants in the Primitive functions (weights the lowering put there, after
    legalization and constant folding) become parameters that the callers pass: FuseTIR takes no
    tensor constant inside a function, and the schedules see a constant weight as a kernel
    argument that is the same constant at every call (`constant_params`)."""
    lifted, kept = {}, {}
    for gv, func in mod.functions_items():
        if _is_primitive(func):
            lift = _LiftConstants()
            body = lift.visit_expr(func.body)
            if lift.constants:
                new = relax.Function([*func.params, *lift.params], body, func.ret_ty, func.is_pure, func.attrs,
                                     func.span)
                lifted[gv.name_hint] = (new, lift.constants)
                continue
        kept[gv] = func
    if not lifted:
        return mod
    bb = relax.BlockBuilder(tvm.IRModule(kept, attrs=mod.attrs, global_infos=mod.global_infos))
    new = {name: (bb.add_func(func, name), constants) for name, (func, constants) in lifted.items()}
    for gv, func in kept.items():
        if isinstance(func, relax.Function) and not _is_primitive(func):
            bb.update_func(gv, _PassConstants(new).visit_expr(func))
    return bb.get()


@tvm.transform.module_pass(opt_level=0, name="edgec.NameKernels")
def name_kernels(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Every PrimFunc carries its name in the KERNEL attribute, so that two nodes computing the
    same thing keep two kernels when a later pass rebuilds the module (the BlockBuilder merges
    structurally equal functions); `tuning.kernel_hash` leaves the attribute out."""
    for gv, func in list(mod.functions_items()):
        if isinstance(func, tvm.tirx.PrimFunc):
            mod[gv] = func.with_attr(KERNEL, gv.name_hint)
    return mod


def _without_primitive(mod: tvm.IRModule, names: set[str]) -> tvm.IRModule:
    """`mod` with the node functions in `names` no longer marked Primitive."""
    mod = mod.clone() if hasattr(mod, "clone") else tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in list(mod.functions_items()):
        if gv.name_hint in names and _is_primitive(func):
            mod[gv] = func.without_attr(PRIMITIVE)
    return mod


def _split_kernels(mod: tvm.IRModule, names: set[str]) -> tvm.IRModule:
    """The node functions in `names` call their PrimFuncs under names of their own,
    `<kernel>__<i>` (each with the KERNEL attribute), and are inlined into their callers."""
    call_tir = tvm.ir.Op.get("relax.call_tir")
    bb = relax.BlockBuilder(mod)
    for gv, func in list(mod.functions_items()):
        if gv.name_hint not in names:
            continue
        callees: dict[str, relax.GlobalVar] = {}

        def visit(expr):
            if isinstance(expr, relax.Call) and expr.op.same_as(call_tir):
                callees.setdefault(expr.args[0].name_hint, expr.args[0])

        relax.analysis.post_order_visit(func.body, visit)
        renamed = {old: bb.add_func(mod[old_gv].with_attr(KERNEL, f"{gv.name_hint}__{i}"), f"{gv.name_hint}__{i}")
                   for i, (old, old_gv) in enumerate(callees.items())}

        @relax.expr_functor.mutator
        class Rename(relax.PyExprMutator):
            def visit_call_(self, call):  # noqa: D102
                call = super().visit_call_(call)
                if call.op.same_as(call_tir) and call.args[0].name_hint in renamed:
                    return relax.Call(call.op, [renamed[call.args[0].name_hint], *call.args[1:]], call.attrs,
                                      call.ty_args)
                return call

        bb.update_func(gv, Rename().visit_expr(func))
    # InlinePrivateFunctions inlines every private function: the other node functions keep
    # their own (so that FuseTIR makes each one kernel of its name) by having a global symbol
    # for the time of the pass.
    mod = bb.get()
    others = [gv.name_hint for gv, func in mod.functions_items() if _is_primitive(func) and gv.name_hint not in names]
    for name in others:
        mod[name] = mod[name].with_attr("global_symbol", name)
    mod = relax.transform.InlinePrivateFunctions()(mod)
    for name in others:
        mod[name] = mod[name].without_attr("global_symbol")
    return mod


@tvm.transform.module_pass(opt_level=0, name="edgec.FuseTIR")
def fuse_tir(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """TVM's FuseTIR: each node function becomes one PrimFunc. Where FuseTIR cannot combine a
    node's ops (a cumsum between two flips: their buffers do not match), that node's ops stay
    separate kernels, `<kernel>__0`, `<kernel>__1`, ... (found by trying each node function
    alone, only when the whole module fails)."""
    try:
        return relax.transform.FuseTIR()(mod)
    except RuntimeError:  # TVM's errors
        pass
    nodes = {gv.name_hint for gv, func in mod.functions_items() if _is_primitive(func)}
    bad = set()
    for name in sorted(nodes):
        interrupt.check()  # TVM reports a Ctrl-C as its own error
        try:
            relax.transform.FuseTIR()(_without_primitive(mod, nodes - {name}))
        except RuntimeError:
            bad.add(name)
    return relax.transform.FuseTIR()(_split_kernels(_without_primitive(mod, bad), bad))
