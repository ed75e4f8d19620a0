"""`fused_elementwise` and `fused`: a body of ops evaluated as one kernel.

`fused_elementwise` is a chain of elementwise/broadcast ops; `fused` is a linear op (conv, dense
or matmul: the ops with the `anchor` trait) followed by elementwise steps on its result (its epilogue: a residual add,
a scale, an activation the op has no attribute for), made by `fuse-epilogue`.

The node's inputs are the chain's external operands; its `body` attribute is a small sub-graph
over them, one step per `;`, each step defining the next number:

    %2 = fused_elementwise(%x, %c0) {body="%2 = mul(%0, %1); %3 = relu(%2)"} : f32[4,8]

Inputs of the body are `%0 .. %{n-1}` (the node's inputs in order); each step is
`%k = op(args) {attrs}` with the attributes printed as in the text format; the result is the last
step. Type inference, the reference and the lowering run the body step by step through the op
registry; the node is one kernel (targets/lower.py), in which the schedules inline the steps
after the first. Only registered elementwise ops with a lowering can be steps (`fusable`), but
for the first step of a `fused` body, which is an `anchor` op.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import VerifyError
from ..ir import TensorType, dtype_name
from .base import MAX_FAN_IN, OPS, Attr, OpDef, get_op, ops_with, register_op





def fusable(op: str) -> bool:
    """Whether `op` may be a step of a fused_elementwise body: a registered elementwise op with
    a lowering (fused_elementwise itself is inlined, never nested)."""
    from .base import OPS
    return op in OPS and OPS[op].kind == "elementwise" and OPS[op].lower is not None and op != "fused_elementwise"


# ---- the body: text <-> steps ----------------------------------------------------------------

def format_body(steps: list[tuple[str, list[int], dict]], num_inputs: int) -> str:
    """[(op, [operand numbers], attrs)] -> the `body` text."""
    from ..text import _attr
    parts = []
    for k, (op, args, attrs) in enumerate(steps):
        text = f"%{num_inputs + k} = {op}({', '.join(f'%{i}' for i in args)})"
        if attrs:
            text += " {" + ", ".join(f"{key}={_attr(attrs[key])}" for key in sorted(attrs)) + "}"
        parts.append(text)
    return "; ".join(parts)


def parse_body(body: str, num_inputs: int, anchored: bool = False) -> list[tuple[str, list[int], dict]]:
    """The `body` text -> [(op, [operand numbers], complete attrs)], checked; `anchored`: the body
    of a `fused` node, whose first step is an `anchor` op. Parsed once per distinct body (the
    verifier infers every node after every pass); each call gets its own lists."""
    return [(op, list(args), dict(attrs)) for op, args, attrs in _parse_body(body, num_inputs, anchored)]


@functools.lru_cache(maxsize=4096)
def _parse_body(body: str, num_inputs: int, anchored: bool) -> tuple[tuple[str, tuple[int, ...], dict], ...]:
    what = "fused" if anchored else "fused_elementwise"
    from ..text import _Tokens
    steps: list[tuple[str, list[int], dict]] = []
    for k, part in enumerate(p for p in body.split(";")):
        t = _Tokens(part.strip(), 0)
        try:
            defined = t.next("var")
            if defined != f"%{num_inputs + k}":
                raise VerifyError(f"step {k} defines {defined}, expected %{num_inputs + k}")
            t.next(text="=")
            op = t.next("ident")
            t.next(text="(")
            args = []
            while not t.accept(")"):
                tok = t.next("var")
                if not tok[1:].isdigit() or int(tok[1:]) >= num_inputs + k:
                    raise VerifyError(f"step {k} uses {tok}, which is not defined before it")
                args.append(int(tok[1:]))
                t.accept(",")
            attrs = t.attrs()
            t.done()
        except VerifyError as e:
            raise VerifyError(f"{what} body {body!r}: {str(e).replace('IR text line 0: ', '')}") from None
        if anchored and k == 0:
            if op not in OPS or not OPS[op].anchor:
                raise VerifyError(f"fused body {body!r}: the first step must be one of {', '.join(ops_with('anchor'))}, "
                                  f"not '{op}'")
        elif not fusable(op):
            raise VerifyError(f"{what} body {body!r}: op '{op}' cannot be fused")
        opdef = get_op(op)
        lo, hi = opdef.num_inputs
        if len(args) < lo or (hi >= 0 and len(args) > hi):
            raise VerifyError(f"{what} body {body!r}: '{op}' takes {lo} to {hi} operands")
        steps.append((op, tuple(args), opdef.complete_attrs(attrs)))
    if len(steps) < 1 + anchored:
        raise VerifyError(f"{what} needs a body of at least {1 + anchored} steps")
    return tuple(steps)


def _infer(types: list[TensorType], attrs: dict, anchored: bool = False) -> list[TensorType]:
    env = list(types)
    for op, args, a in parse_body(attrs["body"], len(types), anchored):
        env.append(get_op(op).infer([env[i] for i in args], a)[0])
    return [env[-1]]


def _reference(arrays: list[np.ndarray], attrs: dict, anchored: bool = False) -> np.ndarray:
    env = list(arrays)
    types = [TensorType.of(a) for a in arrays]
    for op, args, a in parse_body(attrs["body"], len(arrays), anchored):
        opdef = get_op(op)
        out_type = opdef.infer([types[i] for i in args], a)[0]
        r = np.asarray(opdef.run([env[i] for i in args], a)[0]).astype(out_type.np_dtype)
        env.append(r)
        types.append(out_type)
    return env[-1]


def _lower(ctx, xs, attrs, out_types, anchored: bool = False):
    """Each step through its own op's lowering, in the node's kernel; the intermediates are
    emitted, the last step is returned."""
    steps = parse_body(attrs["body"], len(xs), anchored)
    env, types = list(xs), [TensorType(str_dtype(x), tuple(int(d) for d in x.ty.shape)) for x in xs]
    expr = None
    for k, (op, args, a) in enumerate(steps):
        opdef = get_op(op)
        out_type = opdef.infer([types[i] for i in args], a)[0]
        expr = opdef.lower(ctx, [env[i] for i in args], a, [out_type])
        if isinstance(expr, (list, tuple)):
            expr = expr[0]
        types.append(out_type)
        env.append(ctx.bb.emit(expr) if k < len(steps) - 1 else expr)
    return expr


def str_dtype(x) -> str:
    """The edgec dtype name of a relax expression."""
    return dtype_name(str(x.ty.dtype))


register_op(OpDef(
    name="fused_elementwise", kind="elementwise", num_inputs=(1, MAX_FAN_IN),
    attrs={"body": Attr("str")},
    infer=_infer, reference=_reference, lower=_lower,
    summary=f"a chain of elementwise ops (the `body`) over up to {MAX_FAN_IN} inputs, computed as one kernel"))

register_op(OpDef(
    name="fused", kind="complex", num_inputs=(1, MAX_FAN_IN),
    attrs={"body": Attr("str")},
    infer=lambda types, attrs: _infer(types, attrs, True),
    reference=lambda arrays, attrs: _reference(arrays, attrs, True),
    lower=lambda ctx, xs, attrs, out: _lower(ctx, xs, attrs, out, True),
    summary=f"a conv, dense or matmul and elementwise steps on its result (the `body`), over up to "
            f"{MAX_FAN_IN} inputs, computed as one kernel"))
