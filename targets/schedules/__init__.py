"""edgec's default CPU schedules and the Relax pipeline that applies them.

`cpu_pipeline(tvm_target, vector_bits)` is TVM's CPU pipeline (library dispatch, legalize, fold
constants, fuse, lower to the VM) with these changes:

1. before legalization: `clip` becomes minimum/maximum (ConvertLayout has no rule for clip), 2-D
   convolutions go to NHWC with HWIO weights (`convert_layout`, TVM's ConvertLayout when there is
   a convolution; pools and elementwise ops follow their input's layout), and the weight
   transposes are folded into new constants with numpy;
2. legalization: erf, GELU and softmax use TVM's `fast_erf` / `fast_exp` polynomials for float32
   (vectorizable; the default ones are scalar libm calls per element); fusion puts at most
   `MAX_FUSED_OPS` (64) ops into one kernel (`fuse_ops`; TVM's default is 256);
3. every PrimFunc is scheduled by the rules of `rules.py` (`ApplySchedules`); a kernel whose
   schedule vector-blocks a constant weight gets its constants repacked at compile time;
4. with `tuning_db` (a directory written by `edgec tune`, see `tuning.py`): kernels the database
   has a record for, for this target, get the tiled rule with the best knob settings measured
   (reported as "tuned"); the others keep the default settings.

`schedule_func(func, target, vector_bits)` schedules one PrimFunc. `cpu_pipeline(...,
schedule=False)` is the plain TVM pipeline, for comparisons.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, tirx

from edgec import interrupt

from . import int8, rules

# Relax ops that ConvertLayout moves to NHWC; the second entry is the weight layout. Pools and
# elementwise ops take the layout of their input, so a chain of convs stays in NHWC.
NHWC_LAYOUTS = {"relax.nn.conv2d": ["NHWC", "HWIO"]}

SCHEDULED = "tirx.is_scheduled"


def _legalize_erf(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """erf as TVM's `fast_erf` (a clamped rational polynomial in plain arithmetic, float32-accurate):
    it vectorizes, where the default erf is a scalar libm call per element (GELU)."""
    from tvm import topi
    if str(call.args[0].ty.dtype) != "float32":
        return bb.call_te(topi.erf, call.args[0], primfunc_name_hint="erf")
    return bb.call_te(topi.fast_erf, call.args[0], primfunc_name_hint="erf")


def _legalize_gelu(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """GELU (erf form) with `fast_erf` for float32, otherwise TVM's own legalization."""
    from tvm import tirx as tx
    from tvm import topi
    from tvm.relax.transform.legalize_ops import nn as default_nn
    if str(call.args[0].ty.dtype) != "float32":
        return default_nn._nn_gelu(bb, call)  # noqa: SLF001 - TVM's registered default

    def te_gelu(x):
        erf = topi.fast_erf(x * tx.const(0.5**0.5, "float32"))
        return x * (tx.const(0.5, "float32") + erf * tx.const(0.5, "float32"))

    return bb.call_te(te_gelu, call.args[0], primfunc_name_hint="gelu")


def _legalize_softmax(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """softmax with TVM's `fast_exp` (polynomial, vectorizable) for float32."""
    from tvm import topi
    fn = topi.nn.fast_softmax if str(call.args[0].ty.dtype) == "float32" else topi.nn.softmax
    return bb.call_te(fn, call.args[0], call.attrs.axis, primfunc_name_hint="softmax")


# Legalizations that differ from TVM's defaults on CPU targets.
CPU_LEGALIZE = {"relax.erf": _legalize_erf, "relax.nn.gelu": _legalize_gelu,
                "relax.nn.softmax": _legalize_softmax}


@relax.expr_functor.mutator
class _FoldConstantTransposes(relax.PyExprMutator):
    """permute_dims of a constant -> the transposed constant, computed with numpy."""

    def visit_call_(self, call):  # noqa: D102
        call = super().visit_call_(call)
        if (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
                and call.op.name == "relax.permute_dims" and isinstance(call.args[0], tvm.ir.expr.Constant)):
            data = call.args[0].value.numpy()
            axes = call.attrs.axes
            axes = None if axes is None else [int(a) for a in axes]
            return relax.const(np.ascontiguousarray(np.transpose(data, axes)), str(data.dtype))
        return call


@relax.expr_functor.mutator
class _ClipToMinMax(relax.PyExprMutator):
    """clip(x, lo, hi) -> minimum(maximum(x, lo), hi): ConvertLayout has no layout rule for clip
    and would wrap every relu6 of an NHWC network in two transposes."""

    def visit_call_(self, call):  # noqa: D102
        call = super().visit_call_(call)
        if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.clip"):
            return call
        x, lo, hi = call.args
        dtype = str(x.ty.dtype)
        bounds = [getattr(b, "value", None) for b in (lo, hi)]
        if not all(isinstance(b, (int, float)) for b in bounds):
            return call
        lo_c, hi_c = (relax.const(b, dtype) for b in bounds)
        return relax.op.minimum(relax.op.maximum(x, lo_c), hi_c)


@tvm.transform.module_pass(opt_level=0, name="edgec.ClipToMinMax")
def clip_to_min_max(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """See `_ClipToMinMax`."""
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mod[gv] = _ClipToMinMax().visit_expr(func)
    return mod


@tvm.transform.module_pass(opt_level=0, name="edgec.FoldConstantTransposes")
def fold_constant_transposes(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Repack weights once, at compile time: the weight transposes ConvertLayout inserts become
    new constants (numpy, instead of TVM's FoldConstant building a kernel for each)."""
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mod[gv] = _FoldConstantTransposes().visit_expr(func)
    return mod


def schedule_func(func: tirx.PrimFunc, target: tvm.target.Target, vector_bits: int,
                  constant_params=frozenset(), packs: list | None = None, knobs: dict | None = None):
    """The scheduled version of `func` and the name of the rule that scheduled it
    (`(func, None)` when no rule applies). Parameters in `constant_params` (indices) are
    constants at every call site; the tiled rule may repack those and lists them in `packs`.
    `knobs`: the tiled rule's parameters (one entry of `rules.tiled_reduction_space`; None:
    its defaults)."""
    tries = [
        ("int8_dot", lambda f, p: int8.dot_product(f, target)),
        ("tiled_reduction", lambda f, p: rules.tiled_reduction(f, vector_bits, constant_params, p, knobs)),
        ("injective", lambda f, p: rules.injective(f, vector_bits)),
        ("rowwise", lambda f, p: rules.rowwise(f, vector_bits)),
    ]
    for name, rule in tries:
        attempt: list = []
        try:
            sch = rule(func, attempt)
        except Exception:  # noqa: BLE001 - a primitive refused: try the next option
            sch = None
        if sch is not None:
            if packs is not None:
                packs.extend(attempt)
            return sch.mod["main"].with_attr(SCHEDULED, True), name
    return func, None


def _call_tir_sites(mod: tvm.IRModule) -> dict[str, list[list]]:
    """{PrimFunc name: [argument list of each call_tir to it]} over the module's Relax functions."""
    sites: dict[str, list[list]] = {}
    call_tir = tvm.ir.Op.get("relax.call_tir")

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op.same_as(call_tir):
            args = expr.args[1]
            fields = list(args.fields) if isinstance(args, relax.Tuple) else [args]
            sites.setdefault(expr.args[0].name_hint, []).append(fields)

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return sites


def _is_constant(expr) -> bool:
    return isinstance(expr, tvm.ir.expr.Constant)


def constant_params(sites: dict[str, list[list]], name: str) -> frozenset:
    """Indices of the parameters of kernel `name` that are constants at every call site
    (`sites`: from `_call_tir_sites`)."""
    calls = sites.get(name, [])
    return frozenset(i for i in range(min((len(c) for c in calls), default=0))
                     if all(_is_constant(c[i]) for c in calls))


@relax.expr_functor.mutator
class _RepackCallArgs(relax.PyExprMutator):
    """Point call_tir calls at the repacked kernels and repack their constant arguments.
    `packs`: {kernel name: (new GlobalVar, [(argument index, vf)])}."""

    def __init__(self, packs: dict[str, tuple]):
        super().__init__()
        self.packs = packs
        self.call_tir = tvm.ir.Op.get("relax.call_tir")

    def visit_call_(self, call):  # noqa: D102
        call = super().visit_call_(call)
        if not (isinstance(call, relax.Call) and call.op.same_as(self.call_tir)):
            return call
        name = call.args[0].name_hint
        if name not in self.packs:
            return call
        new_gv, packs = self.packs[name]
        fields = list(call.args[1].fields)
        for index, vf in packs:
            data = fields[index].value.numpy()
            fields[index] = relax.const(rules.repack(data, vf), str(data.dtype))
        args = [new_gv, relax.Tuple(fields), *call.args[2:]]
        return relax.Call(call.op, args, call.attrs, call.ty_args)


@tvm.transform.module_pass(opt_level=0, name="edgec.ApplySchedules")
class ApplySchedules:
    """Schedule every unscheduled PrimFunc of the module with edgec's rules, and repack the
    constant weights of the kernels whose schedule asks for it. `tuned`: {kernel structural hash:
    knobs} from a tuning database (`tuning.best_knobs`); those kernels get the tiled rule with
    these knobs. `self.applied` maps each kernel to the rule that scheduled it ("tuned" for the
    kernels scheduled with knobs from the database, "prescheduled" for PrimFuncs that arrived
    already scheduled)."""

    def __init__(self, target: tvm.target.Target, vector_bits: int, tuned: dict[str, dict] | None = None):
        self.target = target
        self.vector_bits = vector_bits
        self.tuned = tuned or {}
        self.applied: dict[str, str | None] = {}

    def _schedule(self, func: tirx.PrimFunc, constant: frozenset, packs: list):
        """(scheduled func, rule) with the database's knobs when it has the kernel."""
        if self.tuned:
            from .tuning import kernel_hash
            knobs = self.tuned.get(kernel_hash(func))
            if knobs is not None:
                tuned_packs: list = []
                new, rule = schedule_func(func, self.target, self.vector_bits, constant, tuned_packs, knobs)
                if rule == "tiled_reduction":
                    packs.extend(tuned_packs)
                    return new, "tuned"
        return schedule_func(func, self.target, self.vector_bits, constant, packs)

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        sites = _call_tir_sites(mod)
        updated = {}
        all_packs: dict[str, list[tuple[int, int]]] = {}
        for gv, func in mod.functions_items():
            interrupt.check()  # a Ctrl-C that an earlier pass (FoldConstant) worked around stops here
            if not isinstance(func, tirx.PrimFunc):
                continue
            if func.attrs is not None and SCHEDULED in func.attrs and int(func.attrs[SCHEDULED]):
                self.applied[gv.name_hint] = "prescheduled"
                continue
            constant = constant_params(sites, gv.name_hint)
            packs: list = []
            new, rule = self._schedule(func, constant, packs)
            self.applied[gv.name_hint] = rule
            if rule is not None:
                updated[gv] = new
            if packs:
                all_packs[gv.name_hint] = packs
        if not all_packs:
            for gv, func in updated.items():
                mod[gv] = func
            return mod
        # A repacked kernel has a new signature: it gets a new GlobalVar (the old one keeps the old
        # type), and its callers pass the repacked constants.
        kept = {gv: updated.get(gv, func) for gv, func in mod.functions_items() if gv.name_hint not in all_packs}
        bb = relax.BlockBuilder(tvm.IRModule(kept, attrs=mod.attrs, global_infos=mod.global_infos))
        renamed = {gv.name_hint: (bb.add_func(updated[gv], gv.name_hint), all_packs[gv.name_hint])
                   for gv in updated if gv.name_hint in all_packs}
        for gv, func in kept.items():
            if isinstance(func, relax.Function):
                bb.update_func(gv, _RepackCallArgs(renamed).visit_expr(func))
        return bb.get()


MAX_FUSED_OPS = 64


@tvm.transform.module_pass(opt_level=0, name="edgec.FuseOps")
def fuse_ops(mod: tvm.IRModule, ctx) -> tvm.IRModule:
    """TVM's FuseOps with at most MAX_FUSED_OPS ops in a kernel. Scheduling a kernel grows
    faster than its op count (each op is inlined into the ones after it): with TVM's default of
    256, scheduling a 2,000-op elementwise chain (-O1) took ten times as long (3.2 s against
    0.34 s). The fusable groups of ordinary models are a handful of ops."""
    config = {**dict(ctx.config), "relax.FuseOps.max_depth": MAX_FUSED_OPS}
    with tvm.transform.PassContext(opt_level=ctx.opt_level, config=config):
        return relax.transform.FuseOps()(mod)


@tvm.transform.module_pass(opt_level=0, name="edgec.ConvertLayout")
def convert_layout(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """TVM's ConvertLayout to NHWC_LAYOUTS, run only when the module has an op it converts: it
    grows faster than quadratically with the bindings of a function (0.5 s at 1,000 elementwise
    ops, 1.3 s at 2,000, 7.6 s at 4,000), and without such an op it changes nothing."""
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name in NHWC_LAYOUTS:
            found.append(expr)

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return relax.transform.ConvertLayout(NHWC_LAYOUTS)(mod) if found else mod


def front_passes(tvm_target: tvm.target.Target, layouts: bool = True) -> list:
    """TVM's CPU passes up to fusion, with edgec's layout changes before legalization:
    library dispatch, clip -> min/max, NHWC convolutions, weight transposes folded, legalize,
    fold constants, fuse."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
    passes = list(cpu_generic.library_dispatch_passes(tvm_target))
    if layouts:
        passes += [clip_to_min_max, relax.transform.Normalize(), convert_layout, relax.transform.Normalize(),
                   fold_constant_transposes]
    if not layouts:
        return passes + list(cpu_generic.legalize_passes(tvm_target))
    return passes + [
        relax.transform.LegalizeOps(customize_legalize_map=CPU_LEGALIZE),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        fuse_ops,
        relax.transform.FuseTIR(),
    ]


def cpu_pipeline(tvm_target: tvm.target.Target, vector_bits: int, schedule: bool = True,
                 tuning_db: str | None = None, report: dict | None = None):
    """The Relax pipeline for a CPU target: layouts, legalize, fuse, schedule, lower to the VM.

    `schedule=False` is TVM's plain pipeline (no layout change, no schedule), for comparisons.
    `tuning_db`: a directory written by `edgec tune` (`tuning.tune`); kernels it has records for
    (same target, same structural hash) get the best knobs measured, the others edgec's default
    settings. `report`, when given, receives {kernel name: rule} where rule is a rule name,
    "tuned", or None (left unscheduled)."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
    tuned = None
    if tuning_db is not None and schedule:
        from .tuning import best_knobs
        tuned = best_knobs(tuning_db, tvm_target)  # read here: an error inside a pass loses its type

    @tvm.transform.module_pass(opt_level=0, name="edgec.CPUPipeline")
    def pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with tvm_target:
            mod = tvm.transform.Sequential(front_passes(tvm_target, layouts=schedule))(mod)
            if schedule:
                apply = ApplySchedules(tvm_target, vector_bits, tuned)
                mod = apply(mod)
                if report is not None:
                    report.update(apply.applied)
            passes = list(cpu_generic.dataflow_lower_passes(tvm_target)) + list(cpu_generic.finalize_passes(tvm_target))
            return tvm.transform.Sequential(passes)(mod)

    return pipeline
