"""ONNX's loss ops, imported as the edgec ops they are made of (no op of their own).

- NegativeLogLikelihoodLoss(input [N, C, d...], target [N, d...] (i32/i64)[, weight [C]])
  {reduction="mean", ignore_index}: loss[n, d...] = -input[n, target[n, d...], d...] * w[n, d...],
  w = weight[target] (1 without weight) and 0 where target == ignore_index (gathered at class 0
  there, so any ignore_index works). Reduction none: loss; sum: its sum; mean: sum(loss) / sum(w)
  with a weight or an ignore_index (the mean over the entries not ignored, as ONNX Runtime; nan
  when all are), else the mean of loss.
  As edgec ops: gather_elements along the class axis (axis 1), gather of the weight, equal/where
  for ignore_index, reduce_sum / reduce_mean.
- SoftmaxCrossEntropyLoss(scores, labels[, weights]) -> (output[, log_prob]): the same on
  log_prob = log_softmax(scores) along the class axis.
"""

from __future__ import annotations

import numpy as np

from .base import onnx_op

REDUCTIONS = ("none", "sum", "mean")


def _nll(ctx, log_prob, target, weight, attrs):
    """NegativeLogLikelihoodLoss of log_prob as edgec ops (see the module docstring)."""
    x = log_prob.type
    if x.rank < 2 or target.type.shape != (x.shape[0], *x.shape[2:]):
        raise ctx.fail(f"the target must have the input's shape without its class axis (axis 1): "
                       f"input {x}, target {target.type}")
    if target.type.dtype not in ("i32", "i64"):
        raise ctx.fail(f"the target must be int32 or int64, got {target.type}")
    if weight is not None and weight.type.shape != (x.shape[1],):
        raise ctx.fail(f"the weight must have one value per class, shape [{x.shape[1]}], got {weight.type}")
    reduction = attrs.get("reduction", "mean")
    if reduction not in REDUCTIONS:
        raise ctx.fail(f"reduction {reduction!r} is not one of {', '.join(REDUCTIONS)}")
    index, keep = target, None
    if "ignore_index" in attrs:
        ignored = ctx.const(np.asarray(attrs["ignore_index"], target.type.np_dtype))
        keep = ctx.emit1("not", [ctx.emit1("equal", [target, ignored])])
        index = ctx.emit1("where", [keep, target, ctx.const(np.zeros((), target.type.np_dtype))])
    picked = ctx.emit1("gather_elements", [log_prob, ctx.emit1("reshape", [index], {
        "shape": [x.shape[0], 1, *x.shape[2:]]})], {"axis": 1})
    loss = ctx.emit1("neg", [ctx.emit1("reshape", [picked], {"shape": list(target.type.shape)})])
    w = None if weight is None else ctx.emit1("gather", [weight, index], {"axis": 0})
    if keep is not None:
        kept = ctx.emit1("cast", [keep], {"to": x.dtype})
        w = kept if w is None else ctx.emit1("mul", [w, kept])
    if w is not None:
        loss = ctx.emit1("mul", [loss, w])
    if reduction == "none":
        return loss
    total = {"axes": [], "keepdims": 0}
    if reduction == "sum":
        return ctx.emit1("reduce_sum", [loss], total)
    if w is None:
        return ctx.emit1("reduce_mean", [loss], total)
    return ctx.emit1("div", [ctx.emit1("reduce_sum", [loss], total), ctx.emit1("reduce_sum", [w], total)])


@onnx_op("NegativeLogLikelihoodLoss")
def _import_nll_loss(ctx, node, inputs, attrs):
    return [_nll(ctx, inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None, attrs)]


@onnx_op("SoftmaxCrossEntropyLoss")
def _import_softmax_cross_entropy_loss(ctx, node, inputs, attrs):
    if inputs[0].type.rank < 2:
        raise ctx.fail(f"the scores must have a class axis (axis 1), got {inputs[0].type}")
    log_prob = ctx.emit1("log_softmax", [inputs[0]], {"axis": 1})
    loss = _nll(ctx, log_prob, inputs[1], inputs[2] if len(inputs) > 2 else None, attrs)
    return [loss, log_prob][:len(node.output)]
