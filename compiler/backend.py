"""edgec as an ONNX backend (`onnx.backend.base.Backend`), for the ONNX conformance suite.

    from edgec.backend import EdgecBackend
    rep = EdgecBackend.prepare(model)          # import, -O2 pipeline, TVM build for this CPU
    outputs = rep.run([x, y])                  # inputs by position (or a dict by name)

`prepare` runs the same path as `edgec compile --target host -O2` without writing an artifact:
the executable is loaded into a Relax VM in this process. Cases handled:
- inputs given as a list/tuple (by position, in the order of the model's non-initializer
  inputs), as a dict by name, or as one array for a single-input model;
- inputs are checked by count, shape and dtype (`InputError` otherwise);
- outputs come back as a named tuple of numpy arrays in the model's output order;
- devices: CPU only (`supports_device("CUDA")` is False, so the suite skips CUDA cases).
Bad models raise `EdgecError` subclasses, as everywhere in edgec.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from .errors import InputError, UnsupportedError
from .ir import Graph


class EdgecBackendRep(BackendRep):
    """A model compiled for the host CPU, ready to run many times."""

    def __init__(self, graph: Graph, executable: Any):
        import tvm
        from tvm import relax

        self.graph = graph
        self.input_names = [v.name for v in graph.inputs]
        self.input_types = [v.type for v in graph.inputs]
        self.output_names = list(graph.output_names)
        self.output_types = [v.type for v in graph.outputs]
        self._vm = relax.VirtualMachine(executable, tvm.cpu())

    def _arrays(self, inputs: Any) -> list[np.ndarray]:
        """The inputs in the model's order, checked against its input types."""
        if isinstance(inputs, dict):
            unknown = sorted(set(inputs) - set(self.input_names))
            missing = [n for n in self.input_names if n not in inputs]
            if unknown or missing:
                raise InputError(f"inputs do not match the model: missing {missing}, unknown {unknown}; "
                                 f"expected {self.input_names}")
            inputs = [inputs[n] for n in self.input_names]
        elif isinstance(inputs, np.ndarray):
            inputs = [inputs]
        inputs = list(inputs)
        if len(inputs) != len(self.input_names):
            raise InputError(f"the model takes {len(self.input_names)} input(s) "
                             f"({', '.join(self.input_names)}), {len(inputs)} given")
        arrays = []
        for name, t, a in zip(self.input_names, self.input_types, inputs):
            a = np.asarray(a)
            if a.dtype != t.np_dtype or tuple(a.shape) != t.shape:
                raise InputError(f"input '{name}' is {a.dtype}{list(a.shape)}; the model expects "
                                 f"{t.np_dtype}{list(t.shape)}")
            arrays.append(np.ascontiguousarray(a))
        return arrays

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        import tvm

        arrays = self._arrays(inputs)
        result = self._vm["main"](*[tvm.runtime.tensor(a) for a in arrays])
        outputs = [np.asarray(r.numpy(), dtype=t.np_dtype).reshape(t.shape)
                   for r, t in zip(result, self.output_types)]
        return namedtupledict("Outputs", self.output_names)(*outputs)


class EdgecBackend(Backend):
    """The ONNX backend API over edgec's host (CPU) compile path."""

    target = "host"
    level = 2

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> EdgecBackendRep:
        """Import `model` (a ModelProto or path), run the -O2 pipeline, build for the host CPU."""
        from .onnx_import import import_onnx
        from .passmanager import PassManager
        from edgec.targets import get_target
        from edgec.targets.build import build_graph

        if not cls.supports_device(device):
            raise UnsupportedError(f"the edgec ONNX backend runs on the CPU only, not on {device}")
        target = get_target(cls.target)
        graph = import_onnx(model, kwargs.get("input_shapes"))
        graph = PassManager(target.pipeline(cls.level)).run(graph)
        built = build_graph(graph, target)
        return EdgecBackendRep(graph, built.executable)

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: Any, inputs: Any, device: str = "CPU", outputs_info: Any = None,
                 **kwargs: Any) -> tuple[Any, ...]:
        """Run one NodeProto on `inputs` (a list by position of the node's present inputs)."""
        import onnx
        from onnx import helper

        arrays = [np.asarray(a) for a in (inputs.values() if isinstance(inputs, dict) else inputs)]
        names = [n for n in node.input if n]
        if len(names) != len(arrays):
            raise InputError(f"node '{node.name or node.op_type}' has {len(names)} inputs, "
                             f"{len(arrays)} given")
        ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in zip(names, arrays)]
        outs = [onnx.ValueInfoProto(name=n) for n in node.output if n]
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = helper.make_model(helper.make_graph([node], "run_node", ins, outs),
                                  opset_imports=[helper.make_opsetid(node.domain, opset)])
        return cls.prepare(model, device).run(arrays)


prepare = EdgecBackend.prepare
run_model = EdgecBackend.run_model
run_node = EdgecBackend.run_node
supports_device = EdgecBackend.supports_device
