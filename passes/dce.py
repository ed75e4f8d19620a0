"""dce: remove nodes whose results nothing uses.

Cases:
- a node none of whose outputs is used by another node or a graph output is removed;
- removal cascades backwards (a chain feeding only dead nodes goes too);
- every op is pure, so nothing else is kept.
"""

from edgec.ir import Graph
from edgec.passmanager import Pass, register_pass


@register_pass
class DeadCodeElimination(Pass):
    name = "dce"
    summary = "remove nodes whose results are unused"

    def run(self, graph: Graph) -> bool:
        live_outputs = {id(v) for v in graph.outputs}
        changed = False
        for node in reversed(list(graph.nodes)):
            if not any(o.uses() or id(o) in live_outputs for o in node.outputs):
                graph.remove(node)
                self.count("removed")
                changed = True
        return changed
