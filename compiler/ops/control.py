"""ONNX control flow, `If`, `Loop` and `Scan`, imported inline (no edgec op of their own).

The IR has no nested graphs: these converters import a branch or a loop body into the graph
being built with `ImportContext.subgraph` (the walker of the main graph; names of the scopes
around a subgraph resolve to their values there). Cases handled:
- If whose condition is known at import: a constant, or computed from constants and static
  shapes (an exporter's `If` on `Shape(x)[0] == 1`; the importer folds such chains as it goes):
  only the taken branch is imported;
- If whose condition depends on data: both branches are imported, and each output is
  `where(cond, then, else)`, so both branches are computed at run time; each output must have
  the same type (dtype and shape) in both branches, else the node is refused, naming the output;
- Loop whose trip count is known at import and whose condition is absent or known (a constant,
  or one that the unrolled iterations fold to a constant, such as a counter compared with a
  bound): unrolled, at most MAX_UNROLL iterations, with its loop-carried values, its scan
  outputs (stacked along a new axis 0) and the iteration number; a Loop without a trip count
  (M omitted, or larger than the limit) runs until its condition, known at each iteration,
  turns false;
- Scan (opset 9 and later; the sequence length is static): unrolled the same way, honouring
  scan_input_axes and scan_input_directions (1: from the end) for the slices it feeds the body,
  and scan_output_axes and scan_output_directions (1: stacked from the end) for its outputs.
Refused with an error naming the node and what would make it supported: a Loop whose trip count
or condition depends on data, one that runs more than MAX_UNROLL iterations, and a Loop or Scan
with no iteration that has scan outputs (they would be empty tensors).
"""

from __future__ import annotations

import numpy as np

from .base import MAX_FAN_IN, balanced_tree, onnx_op

MAX_UNROLL = 64  # iterations of a Loop or Scan that the importer unrolls
UNROLL_WHY = (f"edgec unrolls a Loop at import (up to {MAX_UNROLL} iterations), which needs its trip count "
              "and condition computed from constants and static shapes (fix dynamic input shapes with "
              "--input-shape); one that depends on the input data cannot be unrolled")


def _graph_attr(ctx, attrs, name: str):
    if name not in attrs:
        raise ctx.fail(f"has no '{name}' subgraph attribute")
    return attrs[name]


def _stack(ctx, values, axis: int):
    """`values` (of one shape) stacked along a new axis `axis` (negative: counted in the result's rank)."""
    shape = list(values[0].type.shape)
    if not -len(shape) - 1 <= axis <= len(shape):
        raise ctx.fail(f"scan output axis {axis} is out of range for outputs of rank {len(shape)}")
    axis %= len(shape) + 1
    parts = [ctx.emit1("reshape", [v], {"shape": shape[:axis] + [1] + shape[axis:]}) for v in values]
    return balanced_tree(parts, MAX_FAN_IN, lambda group: ctx.emit1("concat", group, {"axis": axis}))


@onnx_op("If")
def _onnx_if(ctx, node, inputs, attrs):
    """The taken branch for a condition known at import; else both, selected by `where`."""
    cond = inputs[0]
    if cond.type.size != 1 or cond.type.dtype != "bool":
        raise ctx.fail(f"its condition must be one bool, got {cond.type}")
    names = ("then_branch", "else_branch")
    for name in names:
        n_out = len(_graph_attr(ctx, attrs, name).output)
        if n_out != len(node.output):
            raise ctx.fail(f"has {len(node.output)} outputs but its {name} gives {n_out}")
    if cond.is_const:
        taken = names[0] if bool(cond.const_value().reshape(-1)[0]) else names[1]
        return ctx.subgraph(attrs[taken], [], taken)
    then, other = (ctx.subgraph(attrs[name], [], name) for name in names)
    for k, (a, b) in enumerate(zip(then, other)):
        if a.type != b.type:
            raise ctx.fail(f"output {k} ('{node.output[k]}') is {a.type} in then_branch but {b.type} in "
                           "else_branch; the condition depends on data, so edgec computes both branches and "
                           "selects between them, which needs the same type from both (make the condition "
                           "known at import, e.g. with --input-shape, or the branches' types equal)")
    flag = ctx.emit1("reshape", [cond], {"shape": []}) if cond.type.rank else cond
    return [a if a is b else ctx.emit1("where", [flag, a, b]) for a, b in zip(then, other)]


@onnx_op("Loop")
def _onnx_loop(ctx, node, inputs, attrs):
    """Unrolled: body(iteration, cond, carried...) -> (cond, carried..., scan outputs...)."""
    body = _graph_attr(ctx, attrs, "body")
    trip = inputs[0] if inputs else None
    cond = inputs[1] if len(inputs) > 1 else None
    carried = list(inputs[2:])
    n_scan = len(body.output) - 1 - len(carried)
    if len(body.input) != 2 + len(carried) or n_scan < 0:
        raise ctx.fail(f"has {len(carried)} loop-carried values, but its body takes {len(body.input)} inputs "
                       f"and gives {len(body.output)} outputs (it should take {2 + len(carried)} and give at "
                       f"least {1 + len(carried)})")
    trips = None if trip is None else int(ctx.constant_of(trip, "M", UNROLL_WHY).reshape(-1)[0])
    if trips is None and cond is None:
        raise ctx.fail("has neither a trip count nor a condition: it never ends")
    if cond is None:
        cond = ctx.const(np.array(True))
    scans: list[list] = [[] for _ in range(n_scan)]
    i = 0
    while trips is None or i < trips:
        if i and not cond.is_const:
            raise ctx.fail(f"the condition its body computes ('{body.output[0].name}', in iteration {i - 1}) "
                           f"depends on data: {UNROLL_WHY}")
        if not bool(ctx.constant_of(cond, "cond", UNROLL_WHY).reshape(-1)[0]):
            break
        if i == MAX_UNROLL:
            counted = f"a trip count of {trips}" if trips is not None else "no trip count"
            raise ctx.fail(f"has {counted} and its condition still holds after {MAX_UNROLL} iterations; edgec "
                           f"unrolls a Loop at import, up to {MAX_UNROLL} iterations")
        outs = ctx.subgraph(body, [ctx.const(np.array(i, np.int64)), cond, *carried], f"body[{i}]")
        cond, carried = outs[0], outs[1:1 + len(carried)]
        for values, v in zip(scans, outs[1 + len(carried):]):
            values.append(v)
        i += 1
    if n_scan and i == 0:
        raise ctx.fail("runs no iteration, so its scan outputs would be empty tensors, which edgec does not support")
    return [*carried, *(_stack(ctx, values, 0) for values in scans)]


@onnx_op("Scan")
def _onnx_scan(ctx, node, inputs, attrs):
    """Unrolled: body(states..., slices...) -> (states..., scan outputs...), one slice of every
    scan input per iteration."""
    body = _graph_attr(ctx, attrs, "body")
    if "num_scan_inputs" not in attrs:
        raise ctx.fail("has no num_scan_inputs attribute")
    m = attrs["num_scan_inputs"]
    n = len(inputs) - m
    k = len(body.output) - n
    if not 0 < m <= len(inputs) or k < 0 or len(body.input) != len(inputs):
        raise ctx.fail(f"has {len(inputs)} inputs and num_scan_inputs={m}, but its body takes {len(body.input)} "
                       f"inputs and gives {len(body.output)} outputs")
    states, xs = list(inputs[:n]), inputs[n:]
    in_axes = attrs.get("scan_input_axes", [0] * m)
    in_dirs = attrs.get("scan_input_directions", [0] * m)
    out_axes = attrs.get("scan_output_axes", [0] * k)
    out_dirs = attrs.get("scan_output_directions", [0] * k)
    if len(in_axes) != m or len(in_dirs) != m or len(out_axes) != k or len(out_dirs) != k:
        raise ctx.fail(f"needs {m} scan input axes and directions and {k} scan output axes and directions")
    for j, (x, a) in enumerate(zip(xs, in_axes)):
        if not -x.type.rank <= a < x.type.rank:
            raise ctx.fail(f"scan input axis {a} is out of range for scan input {j} ({x.type})")
    axes = [a % x.type.rank for x, a in zip(xs, in_axes)]
    lengths = {x.type.shape[a] for x, a in zip(xs, axes)}
    if len(lengths) != 1:
        raise ctx.fail(f"its scan inputs have sequence lengths {sorted(lengths)}; they must be equal")
    steps = lengths.pop()
    if steps > MAX_UNROLL:
        raise ctx.fail(f"has a sequence length of {steps}; edgec unrolls a Scan at import, up to {MAX_UNROLL} "
                       "iterations")
    if k and steps == 0:
        raise ctx.fail("runs no iteration, so its scan outputs would be empty tensors, which edgec does not support")
    slices = []  # per scan input, its slices in the order the body sees them
    for x, a, d in zip(xs, axes, in_dirs):
        pieces = ctx.emit("split", [x], {"axis": a, "sizes": [1] * steps})
        shape = list(x.type.shape[:a] + x.type.shape[a + 1:])
        pieces = [ctx.emit1("reshape", [p], {"shape": shape}) for p in pieces]
        slices.append(pieces[::-1] if d else pieces)
    scans: list[list] = [[] for _ in range(k)]
    for t in range(steps):
        outs = ctx.subgraph(body, [*states, *(s[t] for s in slices)], f"body[{t}]")
        states = outs[:n]
        for values, v in zip(scans, outs[n:]):
            values.append(v)
    return [*states, *(_stack(ctx, values[::-1] if d else values, a)
                       for values, a, d in zip(scans, out_axes, out_dirs))]
