"""`fused_elementwise`: a chain of elementwise/broadcast ops evaluated as one kernel.

The node's inputs are the chain's external operands; its `body` attribute is a small sub-graph
over them, one step per `;`, each step defining the next number:

    %2 = fused_elementwise(%x, %c0) {body="%2 = mul(%0, %1); %3 = relu(%2)"} : f32[4,8]

Inputs of the body are `%0 .. %{n-1}` (the node's inputs in order); each step is
`%k = op(args) {attrs}` with the attributes printed as in the text format; the result is the last
step. Type inference and the reference run the body step by step through the op registry. The
lowering builds one TE computation from `TE_OPS` (topi per step) and emits it with `call_te`, so the
fused node becomes exactly one TVM kernel. Only ops in `TE_OPS` can be fused (`fusable`).
"""

from __future__ import annotations

import math

import numpy as np
from tvm import tirx, topi

from ..errors import VerifyError
from ..ir import DTYPES, TensorType
from .base import Attr, OpDef, get_op, register_op


# op name -> fn(te tensors, attrs) -> te tensor. Scalars are typed like the first operand.
def _scalar(x, value):
    return tirx.const(value, x.dtype)


def _hard_sigmoid(x, alpha, beta):
    return topi.clip(topi.add(topi.multiply(x, _scalar(x, alpha)), _scalar(x, beta)), 0.0, 1.0)


def _gelu(x, approximate):
    if approximate == "none":
        inner = topi.add(_scalar(x, 1.0), topi.erf(topi.multiply(x, _scalar(x, 1 / math.sqrt(2)))))
    else:
        cube = topi.multiply(topi.multiply(x, x), x)
        z = topi.multiply(_scalar(x, math.sqrt(2 / math.pi)), topi.add(x, topi.multiply(_scalar(x, 0.044715), cube)))
        inner = topi.add(_scalar(x, 1.0), topi.tanh(z))
    return topi.multiply(topi.multiply(_scalar(x, 0.5), x), inner)


TE_OPS = {
    "add": lambda xs, a: topi.add(xs[0], xs[1]),
    "sub": lambda xs, a: topi.subtract(xs[0], xs[1]),
    "mul": lambda xs, a: topi.multiply(xs[0], xs[1]),
    "div": lambda xs, a: topi.divide(xs[0], xs[1]),
    "pow": lambda xs, a: topi.power(xs[0], xs[1]),
    "min": lambda xs, a: topi.minimum(xs[0], xs[1]),
    "max": lambda xs, a: topi.maximum(xs[0], xs[1]),
    "relu": lambda xs, a: topi.nn.relu(xs[0]),
    "sigmoid": lambda xs, a: topi.sigmoid(xs[0]),
    "tanh": lambda xs, a: topi.tanh(xs[0]),
    "exp": lambda xs, a: topi.exp(xs[0]),
    "log": lambda xs, a: topi.log(xs[0]),
    "sqrt": lambda xs, a: topi.sqrt(xs[0]),
    "erf": lambda xs, a: topi.erf(xs[0]),
    "neg": lambda xs, a: topi.negative(xs[0]),
    "abs": lambda xs, a: topi.abs(xs[0]),
    "reciprocal": lambda xs, a: topi.divide(_scalar(xs[0], 1.0), xs[0]),
    "leaky_relu": lambda xs, a: topi.nn.leaky_relu(xs[0], a["alpha"]),
    "hard_sigmoid": lambda xs, a: _hard_sigmoid(xs[0], a["alpha"], a["beta"]),
    "hard_swish": lambda xs, a: topi.multiply(xs[0], _hard_sigmoid(xs[0], 1 / 6, 0.5)),
    "gelu": lambda xs, a: _gelu(xs[0], a["approximate"]),
    "silu": lambda xs, a: topi.multiply(xs[0], topi.sigmoid(xs[0])),
    "clip": lambda xs, a: topi.clip(xs[0], a["min"], a["max"]),
}


def fusable(op: str) -> bool:
    """Whether `op` may be a step of a fused_elementwise body (registered and has a TE form)."""
    from .base import OPS
    return op in TE_OPS and op in OPS and OPS[op].kind == "elementwise"


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
    """The `body` text -> [(op, [operand numbers], complete attrs)], checked."""
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
            attrs = {}
            if t.accept("{"):
                while not t.accept("}"):
                    key = t.next("ident")
                    t.next(text="=")
                    attrs[key] = t.value()
                    t.accept(",")
            t.done()
        except VerifyError as e:
            raise VerifyError(f"fused_elementwise body {body!r}: {str(e).replace('IR text line 0: ', '')}") from None
        if not fusable(op):
            raise VerifyError(f"fused_elementwise body {body!r}: op '{op}' cannot be fused")
        opdef = get_op(op)
        lo, hi = opdef.num_inputs
        if len(args) < lo or (hi >= 0 and len(args) > hi):
            raise VerifyError(f"fused_elementwise body {body!r}: '{op}' takes {lo} to {hi} operands")
        steps.append((op, args, opdef.complete_attrs(attrs)))
    if not steps:
        raise VerifyError("fused_elementwise needs a non-empty body")
    return steps


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
    steps = parse_body(attrs["body"], len(xs))

    def compute(*tensors):
        env = list(tensors)
        for op, args, a in steps:
            env.append(TE_OPS[op]([env[i] for i in args], a))
        out = env[-1]
        want = DTYPES[out_types[0].dtype].name
        return out if out.dtype == want else topi.cast(out, want)

    return ctx.bb.call_te(compute, *xs, primfunc_name_hint="fused_elementwise")


register_op(OpDef(
    name="fused_elementwise", kind="elementwise", num_inputs=(1, -1),
    attrs={"body": Attr("str")},
    infer=_infer, reference=_reference, lower=_lower,
    summary="a chain of elementwise ops (the `body`) computed as one kernel"))
