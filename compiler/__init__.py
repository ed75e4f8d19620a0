"""edgec: a graph compiler from ONNX to TVM modules for edge devices.

    import edgec
    g = edgec.import_onnx("model.onnx")
    print(g)                                  # the text IR
    g2 = edgec.optimize(g, level=2)           # or passes="fold-constants,dce"
    outs = edgec.interpret(g2, {"x": x})
    art = edgec.compile("model.onnx", target="host", output="out").artifact
    edgec.load("out").run({"x": x})
"""

__version__ = "0.1.0"

from .errors import EdgecError  # noqa: E402,F401
from .ir import Graph, Node, TensorType, Value  # noqa: E402,F401
from .onnx_import import import_onnx  # noqa: E402,F401
from .text import parse_ir, print_ir  # noqa: E402,F401
from .interpreter import interpret  # noqa: E402,F401
from .verifier import verify as verify_ir  # noqa: E402,F401  (edgec.verify is the verify module)
from .passmanager import Pass, PassManager, optimize, register_pass  # noqa: E402,F401
from .driver import Artifact, compile, load  # noqa: E402,F401
