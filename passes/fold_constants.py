"""fold-constants: evaluate nodes whose inputs are all constants, through the reference ops.

Cases:
- every input constant, every result at most `max-size` elements: the node is replaced by
  constants computed with the op's numpy reference (results keep their inferred dtype/shape);
- folding cascades in one sweep, since nodes are visited in topological order;
- refused: a result larger than `max-size` (it would bloat the module; counted as
  `skipped-large`), an input that is a placeholder constant from a hash-only dump.
"""

import numpy as np

from edgec.ir import Graph
from edgec.ops import get_op
from edgec.passmanager import Option, Pass, register_pass


@register_pass
class FoldConstants(Pass):
    name = "fold-constants"
    summary = "evaluate nodes whose inputs are all constants"
    options = {"max-size": Option(1 << 22, minimum=0)}

    def run(self, graph: Graph) -> bool:
        changed = False
        for node in list(graph.nodes):
            if not all(v.is_const for v in node.inputs):
                continue
            if any(v.placeholder_hash is not None for v in node.inputs):
                self.count("skipped-placeholder")
                continue
            if any(o.type.size > self.opts["max-size"] for o in node.outputs):
                self.count("skipped-large")
                continue
            results = get_op(node.op).run([v.const_value() for v in node.inputs], node.attrs)
            consts = [graph.const(np.asarray(r).astype(o.type.np_dtype).reshape(o.type.shape), o.type.dtype)
                      for r, o in zip(results, node.outputs)]
            graph.replace_node(node, consts)
            self.count("folded")
            changed = True
        return changed
