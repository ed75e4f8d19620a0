"""`fused_elementwise`: a chain of elementwise/broadcast ops evaluated as one kernel.

The node's inputs are the chain's external operands; its `body` attribute is a small sub-graph
over them, one step per `;`, each step defining the next number:

    %2 = fused_elementwise(%x, %c0) {body="%2 = mul(%0, %1); %3 = relu(%2)"} : f32[4,8]

Inputs of the body are `%0 .. %{n-1}` (the node's inputs in order); each step is
`%k = op(args) {attrs}` with the attributes printed as in the text format; the result is the last
step. Type inference, the reference and the lowering run the body step by step through the op
registry. The lowered steps are elementwise and their intermediates are used only inside the
body, which TVM's operator fusion always puts into one kernel (tests count the kernels). Only
registered elementwise ops with a lowering can be steps (`fusable`).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import VerifyError
from ..ir import TensorType, dtype_name
from .base import MAX_FAN_IN, Attr, OpDef, get_op, register_op


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


def parse_body(body: str, num_inputs: int) -> list[tuple[str, list[int], dict]]:
    """The `body` text -> [(op, [operand numbers], complete attrs)], checked. Parsed once per
    distinct body (the verifier infers every node after every pass); each call gets its own lists."""
    return [(op, list(args), dict(attrs)) for op, args, attrs in _parse_body(body, num_inputs)]


@functools.lru_cache(maxsize=4096)
def _parse_body(body: str, num_inputs: int) -> tuple[tuple[str, tuple[int, ...], dict], ...]:
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
            raise VerifyError(f"fused_elementwise body {body!r}: {str(e).replace('IR text line 0: ', '')}") from None
        if not fusable(op):
            raise VerifyError(f"fused_elementwise body {body!r}: op '{op}' cannot be fused")
        opdef = get_op(op)
        lo, hi = opdef.num_inputs
        if len(args) < lo or (hi >= 0 and len(args) > hi):
            raise VerifyError(f"fused_elementwise body {body!r}: '{op}' takes {lo} to {hi} operands")
        steps.append((op, tuple(args), opdef.complete_attrs(attrs)))
    if not steps:
        raise VerifyError("fused_elementwise needs a non-empty body")
    return tuple(steps)


def _infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    env = list(types)
    for op, args, a in parse_body(attrs["body"], len(types)):
        env.append(get_op(op).infer([env[i] for i in args], a)[0])
    return [env[-1]]


def _reference(arrays: list[np.ndarray], attrs: dict) -> np.ndarray:
    env = list(arrays)
    types = [TensorType.of(a) for a in arrays]
    for op, args, a in parse_body(attrs["body"], len(arrays)):
        opdef = get_op(op)
        out_type = opdef.infer([types[i] for i in args], a)[0]
        r = np.asarray(opdef.run([env[i] for i in args], a)[0]).astype(out_type.np_dtype)
        env.append(r)
        types.append(out_type)
    return env[-1]


def _lower(ctx, xs, attrs, out_types):
    """Each step through its own op's lowering; the intermediates are emitted, the last step is
    returned. The steps are elementwise and each intermediate has a single use, so TVM's operator
    fusion makes the chain one kernel (together with the conv or matmul feeding it, if any)."""
    steps = parse_body(attrs["body"], len(xs))
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
