"""edgec as an ONNX backend (`onnx.backend.base.Backend`), for the ONNX conformance suite.

    from edgec.backend import EdgecBackend
    rep = EdgecBackend.prepare(model)          # import, -O2 pipeline, TVM build for this CPU
    outputs = rep.run([x, y])                  # inputs by position (or a dict by name)

`prepare` runs the same path as `edgec compile --target host -O2` without writing an artifact:
the executable is loaded into a Relax VM in this process. Cases handled:
- a graph input that edgec needs as a compile-time constant (a Reshape shape, Slice starts,
  reduction axes fed as inputs, as the ONNX node tests do): edgec compiles static shapes only, so
  such an input is bound to the value given at run time and the model is compiled then (once
  per distinct value). The importer names such inputs (`needs_constant` on its error): a graph
  input it needs as a constant (also the data of an op whose output shape depends on values:
  NonZero, Unique, NonMaxSuppression, Compress's condition), or an integer graph input a shape-like operand
  is computed from (a window size, a crop shape), never a float or bool one; inputs
  declared with a zero-sized dim (no values, only a shape) are bound the same way;
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


def _compile(model: Any, bound: dict[str, np.ndarray], input_shapes: Any, target_name: str, level: int):
    """Import (with the `bound` graph inputs turned into initializers), optimize, build."""
    import onnx
    from onnx import numpy_helper
    from .driver import build
    from .onnx_import import import_onnx

    if bound:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        kept = [i for i in model.graph.input if i.name not in bound]
        del model.graph.input[:]
        model.graph.input.extend(kept)
        model.graph.initializer.extend(numpy_helper.from_array(a, name) for name, a in bound.items())
    result = build(import_onnx(model, input_shapes), target_name, level)
    return result.graph, result.built.executable


def _empty_inputs(model: Any) -> list[str]:
    """Graph inputs declared with a zero-sized dim. They carry no values, only a shape (empty
    axes, the `target_type` of CastLike, the data of an empty-set reduction), and edgec refuses
    empty runtime inputs, so the backend binds them like constants: everything they determine is
    fixed at compile time anyway."""
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits and any(
        d.HasField("dim_value") and d.dim_value == 0 for d in i.type.tensor_type.shape.dim)]


def _needs_constant(error: Exception, model: Any) -> str | None:
    """The graph input an import error asks to be a constant, if it is one."""
    name = getattr(error, "needs_constant", None)
    if name and any(i.name == name for i in model.graph.input):
        return name
    return None


class EdgecBackendRep(BackendRep):
    """A model compiled for the host CPU, ready to run many times.

    Built either from a compiled graph, or (when some graph inputs must be constants) from the
    model and the names of those inputs: it then compiles at `run`, once per distinct value."""

    def __init__(self, model: Any, graph: Graph | None, executable: Any, bound_names: list[str],
                 input_shapes: Any = None, target: str = "host", level: int = 2):
        self.model = model
        self.input_names = [i.name for i in model.graph.input
                            if i.name not in {t.name for t in model.graph.initializer}]
        self.bound_names = list(bound_names)
        self._input_shapes, self._target, self._level = input_shapes, target, level
        self._compiled: dict[Any, tuple[Graph, Any]] = {}
        if graph is not None:
            self._compiled[()] = (graph, self._vm(executable))
        self.output_names = [o.name for o in model.graph.output]

    @staticmethod
    def _vm(executable: Any):
        import tvm
        from tvm import relax
        return relax.VirtualMachine(executable, tvm.cpu())

    def _by_name(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, dict):
            unknown = sorted(set(inputs) - set(self.input_names))
            missing = [n for n in self.input_names if n not in inputs]
            if unknown or missing:
                raise InputError(f"inputs do not match the model: missing {missing}, unknown {unknown}; "
                                 f"expected {self.input_names}")
            return {n: np.asarray(inputs[n]) for n in self.input_names}
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        inputs = list(inputs)
        if len(inputs) != len(self.input_names):
            raise InputError(f"the model takes {len(self.input_names)} input(s) "
                             f"({', '.join(self.input_names)}), {len(inputs)} given")
        return {n: np.asarray(a) for n, a in zip(self.input_names, inputs)}

    def _compiled_for(self, feeds: dict[str, np.ndarray]) -> tuple[Graph, Any]:
        """The compiled graph for these values of the bound inputs (compiling if new)."""
        while True:
            key = tuple((n, feeds[n].dtype.str, feeds[n].shape, feeds[n].tobytes()) for n in self.bound_names)
            if key in self._compiled:
                return self._compiled[key]
            bound = {n: feeds[n] for n in self.bound_names}
            try:
                graph, executable = _compile(self.model, bound, self._input_shapes, self._target, self._level)
            except UnsupportedError as e:
                name = _needs_constant(e, self.model)
                if name is None or name in self.bound_names:
                    raise
                self.bound_names.append(name)
                continue
            self._compiled[key] = (graph, self._vm(executable))
            return self._compiled[key]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        import tvm

        feeds = self._by_name(inputs)
        graph, vm = self._compiled_for(feeds)
        from .interpreter import check_inputs
        arrays = list(check_inputs(graph, {v.name: feeds[v.name] for v in graph.inputs}).values())
        result = vm["main"](*[tvm.runtime.tensor(a) for a in arrays])
        outputs = [np.asarray(r.numpy(), dtype=o.type.np_dtype).reshape(o.type.shape)
                   for r, o in zip(result, graph.outputs)]
        return namedtupledict("Outputs", graph.output_names)(*outputs)


class EdgecBackend(Backend):
    """The ONNX backend API over edgec's host (CPU) compile path."""

    target = "host"
    level = 2

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> EdgecBackendRep:
        """Import `model` (a ModelProto), run the -O2 pipeline, build for the host CPU; if a graph
        input must be a compile-time constant, compile at the first `run` instead."""
        import onnx
        if not cls.supports_device(device):
            raise UnsupportedError(f"the edgec ONNX backend runs on the CPU only, not on {device}")
        if not isinstance(model, onnx.ModelProto):  # a path: read it and its external data here
            from .onnx_import import load_model
            model, _ = load_model(model)
        shapes = kwargs.get("input_shapes")
        if _empty_inputs(model):
            return EdgecBackendRep(model, None, None, _empty_inputs(model), shapes, cls.target, cls.level)
        try:
            graph, executable = _compile(model, {}, shapes, cls.target, cls.level)
        except UnsupportedError as e:
            name = _needs_constant(e, model)
            if name is None:
                raise
            return EdgecBackendRep(model, None, None, [name], shapes, cls.target, cls.level)
        return EdgecBackendRep(model, graph, executable, [], shapes, cls.target, cls.level)

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
