"""eliminate-noop: remove operations that return their input unchanged.

Cases (one rule per line in `RULES`; every rule also requires that the result has exactly the
type of the value it is replaced by, so a broadcast or a dtype change is never dropped):
- `identity(x) -> x` (ONNX Identity and inference-mode Dropout import as `identity`);
- `x*1 -> x`, `1*x -> x`, `x+0 -> x`, `0+x -> x`, `x-0 -> x`, `x/1 -> x`, `pow(x, 1) -> x`,
  where the constant may be a scalar or any tensor filled with that value;
- `reshape` to the same shape, `transpose` by the identity permutation, `cast` to the same
  dtype, `pad` with all pads zero, `slice` that keeps every element in order (all steps 1),
  `expand` to the same shape (ONNX Squeeze/Unsqueeze/Flatten import as `reshape`).
Refused (with the reason): a result type that differs from the input's (`x*ones` that
broadcasts x to a larger shape, a cast that changes the dtype), a constant that is not exactly
the neutral value (`x + 1e-5` is not `x`), a permutation that is not the identity, a non-zero pad,
a slice with a step other than 1.
"""

from edgec.rewrite import Const, Op, Rule, RewritePass, Var, is_splat, splat
from edgec.passmanager import register_pass


def _same_type(m):
    x, out = m["x"], m.root.output
    if x.type != out.type:
        return f"the result {out.type} differs from the input {x.type}"
    return None


def _splat_is(name, expected):
    def check(m):
        if not is_splat(m[name], expected):
            s = splat(m[name])
            if s is None:
                return f"the constant {m[name].type} is not filled with {expected:g}"
            return f"the constant is {s:g}, not {expected:g}"
        return _same_type(m)
    return check


def _attrs_check(predicate, what):
    def check(m):
        if not predicate(m.root, m["x"]):
            return f"{m.root.op} is not a no-op: {what}"
        return _same_type(m)
    return check


def _full_slice(node, x):
    a = node.attrs
    steps = a.get("steps") or [1] * len(a.get("starts", []))
    return all(s == 1 for s in steps) and node.output.type == x.type


def _identity(graph, m):
    return [m["x"]]


def _rule(name, pattern, check):
    return Rule(name, pattern, _identity, check)


X = Var("x")
RULES = [
    _rule("identity", Op("identity", X), _same_type),                                   # identity(x) -> x
    _rule("dropout", Op("dropout", X), _same_type),                   # dropout(x) -> x
    _rule("mul-one", Op("mul", X, Const("c"), commutative=True), _splat_is("c", 1.0)),  # x*1 -> x
    _rule("add-zero", Op("add", X, Const("c"), commutative=True), _splat_is("c", 0.0)), # x+0 -> x
    _rule("sub-zero", Op("sub", X, Const("c")), _splat_is("c", 0.0)),                   # x-0 -> x
    _rule("div-one", Op("div", X, Const("c")), _splat_is("c", 1.0)),                    # x/1 -> x
    _rule("pow-one", Op("pow", X, Const("c")), _splat_is("c", 1.0)),                    # x**1 -> x
    _rule("reshape", Op("reshape", X), _same_type),                                     # reshape(x, x.shape) -> x
    _rule("transpose", Op("transpose", X),                                              # transpose(x, [0,1,..]) -> x
          _attrs_check(lambda n, x: list(n.attrs.get("perm") or []) == list(range(x.type.rank)),
                       "the permutation is not the identity")),
    _rule("cast", Op("cast", X), _same_type),                                           # cast(x: T, to=T) -> x
    _rule("pad", Op("pad", X),                                                          # pad(x, 0...) -> x
          _attrs_check(lambda n, x: not any(n.attrs.get("pads", [])), "some pads are not zero")),
    _rule("slice", Op("slice", X), _attrs_check(_full_slice, "it drops or reorders elements")),  # x[:] -> x
    _rule("expand", Op("expand", X), _same_type),                                       # expand(x, x.shape) -> x
]


@register_pass
class EliminateNoop(RewritePass):
    name = "eliminate-noop"
    summary = "remove identities, no-op shape ops and arithmetic with neutral constants"

    def rules(self):
        return RULES
