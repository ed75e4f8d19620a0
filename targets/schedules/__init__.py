"""edgec's default CPU schedules and the Relax pipeline that applies them.

`cpu_pipeline(target)` (an edgec Target, whole: its TVM target, vector width and dot-product
flag are its fields) turns a module from `lower_graph` (one Primitive Relax
function per IR node) into a VM module:

1. `front_passes`: legalization, where erf, GELU and softmax use TVM's `fast_erf` / `fast_exp`
   polynomials for float32 (vectorizable; the default ones are scalar libm calls per element)
   and take (Gather, Resize, lookup tables) is written out without topi.take's warning;
   constant folding inside the node functions; their constants become kernel arguments; FuseTIR
   makes each node function one PrimFunc named after the node. No fusion or layout pass of
   TVM's: the IR's nodes and layouts are the kernels';
2. every PrimFunc is scheduled by the rules of `rules.py` (`ApplySchedules`); a kernel whose
   schedule vector-blocks a constant weight gets its constants repacked at compile time;
3. with `tuning_db` (a directory written by `edgec tune`, see `tuning.py`): kernels the database
   has a record for, for this target, get the tiled rule with the best knob settings measured
   (reported as "tuned"); the others keep the default settings;
4. TVM's VM lowering, which turns a kernel that only reshapes contiguous data into a view.

`schedule_func(func, target)` schedules one PrimFunc. `cpu_pipeline(...,
schedule=False)` leaves the kernels unscheduled, for comparisons.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

from edgec import interrupt

from . import int16, int8, rules

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


def _legalize_take(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """take along an axis in TVM's "fast" mode (the index read as it is), written as the TE
    compute topi.take makes, without the warning topi.take logs for that mode ("Fast mode
    segfaults when there are out-of-bounds indices", once per take: 4-12 times per compile of a
    model with Gather or Resize). edgec's indices are in bounds: constant ones are checked at
    import, those of Resize and of lookup tables are made in range. Other modes (and a take
    without an axis) go to topi.take."""
    from tvm import te, topi
    from tvm.relax.transform.legalize_ops import index as default_index
    if call.attrs.axis is None or call.attrs.mode != "fast":
        return default_index._take(bb, call)  # noqa: SLF001 - TVM's registered default

    def te_take(x, idx):
        axis = int(call.attrs.axis) % len(x.shape)
        n = len(idx.shape)

        def element(*i):
            at = idx(*i[axis:axis + n]).astype(str(x.shape[axis].ty))
            return x(*i[:axis], at, *i[axis + n:])
        return te.compute([*x.shape[:axis], *idx.shape, *x.shape[axis + 1:]], element, name="T_take")

    return bb.call_te(te_take, call.args[0], call.args[1], primfunc_name_hint="take")


# Legalizations that differ from TVM's defaults on CPU targets.
CPU_LEGALIZE = {"relax.erf": _legalize_erf, "relax.nn.gelu": _legalize_gelu,
                "relax.nn.softmax": _legalize_softmax, "relax.take": _legalize_take}


def schedule_func(func: tirx.PrimFunc, target, constant_params=frozenset(), packs: list | None = None,
                  knobs: dict | None = None):
    """The scheduled version of `func` and the name of the rule that scheduled it
    (`(func, None)` when no rule applies). Parameters in `constant_params` (indices) are
    constants at every call site; the tiled rule may repack those and lists them in `packs`.
    `knobs`: the tiled rule's parameters (one entry of `rules.tiled_reduction_space`; None:
    its defaults)."""
    tries = [
        ("int8_dot", lambda f, p: int8.dot_product(f, target)),
        ("int16_madd", lambda f, p: int16.madd_product(f, target)),
        ("tiled_reduction", lambda f, p: rules.tiled_reduction(f, target.vector_bits, constant_params, p, knobs)),
        ("injective", lambda f, p: rules.injective(f, target.vector_bits)),
        ("rowwise", lambda f, p: rules.rowwise(f, target.vector_bits)),
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


def _has_block(stmt) -> bool:
    """Whether the statement holds a block (stops at the first)."""
    from tvm import s_tir
    if isinstance(stmt, s_tir.SBlockRealize):
        return True
    if isinstance(stmt, tirx.SeqStmt):
        return any(_has_block(s) for s in stmt.seq)
    if isinstance(stmt, tirx.IfThenElse):
        return _has_block(stmt.then_case) or (stmt.else_case is not None and _has_block(stmt.else_case))
    body = getattr(stmt, "body", None)
    return body is not None and _has_block(body)


def _is_loop_nest(func: tirx.PrimFunc) -> bool:
    """Whether the kernel has no blocks under its root: a lowering that writes its own loops
    (the `recurrence`'s time loop), which no rule schedules; it runs as written."""
    from tvm import s_tir
    root = func.body
    return isinstance(root, s_tir.SBlockRealize) and not _has_block(root.block.body)


@tvm.transform.module_pass(opt_level=0, name="edgec.ApplySchedules")
class ApplySchedules:
    """Schedule every unscheduled PrimFunc of the module with edgec's rules, and repack the
    constant weights of the kernels whose schedule asks for it. `tuned`: {kernel structural hash:
    knobs} from a tuning database (`tuning.best_knobs`); those kernels get the tiled rule with
    these knobs. `self.applied` maps each kernel to the rule that scheduled it ("tuned" for the
    kernels scheduled with knobs from the database, "prescheduled" for PrimFuncs that arrived
    already scheduled and for loop nests without blocks, `_is_loop_nest`)."""

    def __init__(self, target, tuned: dict[str, dict] | None = None, progress=None):
        self.target = target  # the edgec Target
        self.progress = progress  # progress("kernels scheduled", done, total), or None
        self.tuned = tuned or {}
        self.applied: dict[str, str | None] = {}

    def _schedule(self, func: tirx.PrimFunc, constant: frozenset, packs: list):
        """(scheduled func, rule) with the database's knobs when it has the kernel."""
        if self.tuned:
            from .tuning import kernel_hash
            knobs = self.tuned.get(kernel_hash(func))
            if knobs is not None:
                tuned_packs: list = []
                new, rule = schedule_func(func, self.target, constant, tuned_packs, knobs)
                if rule == "tiled_reduction":
                    packs.extend(tuned_packs)
                    return new, "tuned"
        return schedule_func(func, self.target, constant, packs)

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        sites = _call_tir_sites(mod)
        updated = {}
        all_packs: dict[str, list[tuple[int, int]]] = {}
        total = sum(isinstance(f, tirx.PrimFunc) for _, f in mod.functions_items())
        done = 0
        for gv, func in mod.functions_items():
            interrupt.check()  # a Ctrl-C that an earlier pass (FoldConstant) worked around stops here
            if not isinstance(func, tirx.PrimFunc):
                continue
            done += 1
            if self.progress is not None:
                self.progress("kernels scheduled", done, total)
            if func.attrs is not None and SCHEDULED in func.attrs and int(func.attrs[SCHEDULED]):
                self.applied[gv.name_hint] = "prescheduled"
                continue
            if relax.analysis.has_reshape_pattern(func):
                continue  # left as it is for TVM's RewriteDataflowReshape, which makes it a view
            if _is_loop_nest(func):
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


def front_passes(tvm_target: tvm.target.Target) -> list:
    """TVM's CPU passes up to the kernels, for a module from `lower_graph`: legalize (with
    CPU_LEGALIZE), fold constants inside the node functions, pass their constants as arguments
    (`lift_constants`), and make each node function one PrimFunc (FuseTIR); no fusion or layout
    pass of TVM's. Library dispatch stays TVM's (it offloads nothing for plain LLVM targets)."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
    from ..lower import fuse_tir, lift_constants, name_kernels
    return [*cpu_generic.library_dispatch_passes(tvm_target),
            relax.transform.LegalizeOps(customize_legalize_map=CPU_LEGALIZE),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            lift_constants,
            fuse_tir,
            relax.transform.DeadCodeElimination(),
            name_kernels]


def cpu_pipeline(target, schedule: bool = True, tuning_db: str | None = None, report: dict | None = None,
                 progress=None):
    """The Relax pipeline for a CPU target: a kernel per node, scheduled, lowered to the VM.

    `schedule=False` leaves the kernels unscheduled, for comparisons.
    `tuning_db`: a directory written by `edgec tune` (`tuning.tune`); kernels it has records for
    (same target, same structural hash) get the best knobs measured, the others edgec's default
    settings. `report`, when given, receives {kernel name: rule} where rule is a rule name,
    "tuned", or None (left unscheduled). `progress(unit, done, total)`: called as kernels are
    scheduled."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
    tvm_target = target.tvm_target()
    tuned = None
    if tuning_db is not None and schedule:
        from .tuning import best_knobs
        tuned = best_knobs(tuning_db, tvm_target)  # read here: an error inside a pass loses its type

    @tvm.transform.module_pass(opt_level=0, name="edgec.CPUPipeline")
    def pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with tvm_target:
            mod = tvm.transform.Sequential(front_passes(tvm_target))(mod)
            if schedule:
                apply = ApplySchedules(target, tuned, progress)
                mod = apply(mod)
                if report is not None:
                    report.update(apply.applied)
            # DeadCodeElimination: the kernels that became views are no longer called
            passes = [*cpu_generic.dataflow_lower_passes(tvm_target), relax.transform.DeadCodeElimination(),
                      *cpu_generic.finalize_passes(tvm_target)]
            return tvm.transform.Sequential(passes)(mod)

    return pipeline
