"""`LazyModule(name)`: a module imported when one of its attributes is first used.

TVM takes seconds to import, so edgec loads it only where it builds or runs code: the op
registry's lowerings reach it through `relax = LazyModule("tvm.relax")` and the like, and
importing edgec (the IR, ONNX import, passes, the CLI and its listings) leaves it unloaded. A
module that uses one must not touch its attributes at import time (in a table of functions, say).
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)
