"""The op registry, split by family. Importing this package registers every op.

| module | ops |
|---|---|
| `elementwise` | unary and binary math, activations, comparisons, logic, where, cast, clip |
| `nn` | conv, conv_transpose, pooling, normalization, softmax, matmul/dense, resize |
| `shape` | reshape, transpose, concat, split, slice, gather, pad, expand, ... |
| `reduce` | reductions, argmax/argmin |
| `quant` | quantize/dequantize and integer conv/matmul |
| `qlinear` | ONNX Runtime's QOperator ops (com.microsoft QLinearAdd, QGemm, ...) and DynamicQuantizeLinear |
| `control` | no ops: the importers of ONNX If, Loop and Scan, which inline their subgraphs |
| `attention` | no ops: importers of Attention, RotaryEmbedding and com.microsoft Attention / MultiHeadAttention, decomposed into the ops above |
| `contrib` | importers only: ONNX Runtime's float contrib ops (com.microsoft FusedConv, Gelu, SkipLayerNormalization, ...) as edgec ops |
| `loss` | importers only: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss as edgec ops |
| `rnn` | recurrence: the time loop of ONNX LSTM, GRU and RNN |

See `base.py` for what an op definition holds.
"""

from .base import (MAX_FAN_IN, ONNX_CONVERTERS, OPS, REQUIRED, Attr, OpDef, balanced_tree,  # noqa: F401
                   broadcast_infer, broadcast_shapes, get_op, normalize_axis, onnx_key, onnx_op, ops_with, register_op,
                   same_as_first)
from . import elementwise, nn, shape, reduce, quant, qlinear, fused, control, attention, contrib, loss, rnn  # noqa: F401,E402  (registers the ops)
