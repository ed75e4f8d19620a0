"""edgec: a graph compiler from ONNX to TVM modules for edge devices.

    import edgec
    g = edgec.import_onnx("model.onnx")
    print(g)                                  # the text IR
    g2 = edgec.optimize(g, level=2)           # or passes="fold-constants,dce"
    outs = edgec.interpret(g2, {"x": x})
    art = edgec.compile("model.onnx", target="host", output="out").artifact
    edgec.load("out").run({"x": x})

The names below are imported on first use, so that `import edgec` (and the `edgec` command
before it has read its arguments) loads nothing heavy.
"""

import importlib

__version__ = "0.1.0"

# public name -> (module, name in it)
_API = {
    "EdgecError": ("errors", "EdgecError"),
    "Graph": ("ir", "Graph"), "Node": ("ir", "Node"), "TensorType": ("ir", "TensorType"), "Value": ("ir", "Value"),
    "import_onnx": ("onnx_import", "import_onnx"), "export_onnx": ("onnx_export", "export_onnx"),
    "parse_ir": ("text", "parse_ir"), "print_ir": ("text", "print_ir"),
    "interpret": ("interpreter", "interpret"),
    "verify_ir": ("verifier", "verify"),  # edgec.verify is the verify module
    "Pass": ("passmanager", "Pass"), "PassManager": ("passmanager", "PassManager"),
    "Option": ("passmanager", "Option"), "optimize": ("passmanager", "optimize"),
    "register_pass": ("passmanager", "register_pass"),
    "quantize": ("quantization", "quantize"), "calibrate": ("quantization", "calibrate"),
    "Artifact": ("driver", "Artifact"), "compile": ("driver", "compile"), "load": ("driver", "load"),
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'edgec' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
