"""The `edgec` command line.

    edgec compile MODEL [--target T] -o DIR [-O N] [--passes STR] [--input-shape NAME=DIMS] [instruments]
    edgec run DIR --input NAME=FILE.npy ... [-o OUTDIR]
    edgec profile DIR [--runs N] [--threads N] [--json]
    edgec opt MODEL|IR (--passes STR | -O N) [-o OUT.eir] [--full-constants] [instruments]
    edgec quantize MODEL --calibration DATA -o OUT.eir|OUT.onnx [--method M] [--report FILE.md|.json]
    edgec tune MODEL [--target T] --db DIR [--trials N] [--rpc HOST:PORT [--key K]] [--threads N]
    edgec verify MODEL [--target T] [-O N] [--input NAME=FILE.npy | --inputs FILE.npz] [--bisect]
    edgec compare MODEL [--target T] [-O N | --passes STR] [--inputs FILE.npz] [--bisect] [--compiled] [--json]
    edgec inspect MODEL | DIR
    edgec diff A B | DIR [--json] [--html FILE]
    edgec view MODEL|IR|DIR -o PAGE.html [--profile FILE.json] [--compare FILE.json]
    edgec check-pass [FILE.py] --pass NAME [--examples N] [--family F] [--seed S] [--out DIR] [--replay FILE.eir]
    edgec passes | targets | ops
    edgec --version

Errors on bad input print one message and exit with status 2; `--debug` (before or after the
command) shows tracebacks. Ctrl-C prints `edgec: interrupted` and exits with status 130, leaving
nothing half-written (see `edgec.interrupt`). Reports (`--timing`) go to stderr, results to stdout.
Nothing heavy is imported before the arguments are read: `--help`, `passes`, `targets` and `ops`
do not load TVM.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import math
import os
import signal
import stat
import sys
import tokenize
import traceback
from pathlib import Path

from . import interrupt
from .errors import EdgecError, InputError
from .lazy import LazyModule

np = LazyModule("numpy")  # loaded on first use, once main() has installed the Ctrl-C handler

DEFAULT_LEVEL = 2


def _default_target() -> str:
    from edgec import targets
    return getattr(targets, "DEFAULT_TARGET", "host")


# ---- shared options -----------------------------------------------------------------------

def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="fix the shape of a model input (needed for dynamic dims)")
    p.add_argument("--load-pass", action="append", default=[], metavar="FILE.py",
                   help="load custom passes from a Python file (they register with @register_pass)")


def _add_pipeline_options(p: argparse.ArgumentParser, target: bool = True) -> None:
    if target:
        p.add_argument("--target", "-t", default=None, help="target name or alias (see `edgec targets`)")
    g = p.add_mutually_exclusive_group()  # --passes replaces the level's pipeline: one or the other
    g.add_argument("-O", dest="level", type=int, default=None, choices=range(0, 4), metavar="N",
                   help=f"optimization level 0-3 (default {DEFAULT_LEVEL}); not with --passes")
    g.add_argument("--passes", default=None, metavar="PIPELINE",
                   help="explicit pipeline instead of a level, e.g. 'fold-constants,dce' (see `edgec passes`)")


def _add_precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("fp16", "mixed"), default=None,
                   help="GPU targets: compute in float16 with float32 accumulation (fp16), or only conv, dense "
                        "and matmul in float16 (mixed); adds convert-precision to the level's pipeline")


def _add_instrument_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pass instruments")
    g.add_argument("--print-ir-before", action="append", default=[], metavar="PASS",
                   help="print the IR to stderr before each run of PASS (repeatable, or PASS,PASS)")
    g.add_argument("--print-ir-after", action="append", default=[], metavar="PASS",
                   help="print the IR to stderr after each run of PASS (repeatable, or PASS,PASS)")
    g.add_argument("--print-ir-after-all", action="store_true", help="print the IR to stderr after every pass")
    g.add_argument("--print-ir-after-change", action="store_true",
                   help="print the IR to stderr after every pass that changed it")
    g.add_argument("--dump-ir", type=Path, metavar="DIR", help="write the IR after each pass, numbered")
    g.add_argument("--timing", action="store_true",
                   help="print per-pass wall time, changes, node counts and statistics to stderr")
    g.add_argument("--no-verify", action="store_true", help="do not verify the IR after each pass")
    g.add_argument("--reproducer-dir", type=Path, default=None, metavar="DIR",
                   help="where a failing pass writes its reproducer (default: a new temporary directory, "
                        "made only then)")


def _instruments(args: argparse.Namespace):
    from .passmanager import Instruments
    split = lambda items: {p for item in items for p in item.split(",") if p}  # noqa: E731
    return Instruments(
        verify=not args.no_verify,
        print_before=split(args.print_ir_before), print_after=split(args.print_ir_after),
        print_after_all=args.print_ir_after_all, print_after_change=args.print_ir_after_change,
        dump_dir=args.dump_ir, reproducer=args.reproducer_dir or True,
        out=lambda text: print(text, file=sys.stderr))


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return n


def _input_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    from .onnx_import import parse_shape
    return dict(parse_shape(s) for s in args.input_shape)


def _load_passes(files: list[str]) -> None:
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise EdgecError(f"--load-pass {f}: no such file")
        spec = importlib.util.spec_from_file_location(f"edgec_user_pass_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except EdgecError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's file; say which and why
            raise EdgecError(f"--load-pass {f}: loading it failed: {type(e).__name__}: {e}") from e


NPY_HEADER_BYTES = 12 + 65536  # magic, version and length field of a .npy file, and its longest v1.0 header


def read_npy(file: str | Path, what: str) -> np.ndarray:
    """The array in the .npy file `file`, C-contiguous in native byte order (a Fortran-order or
    big-endian file is converted); an InputError starting with `what` for anything else: a file
    that cannot be opened, is not a .npy file of format 1.0 or 2.0 or has a damaged header, holds
    a dtype edgec does not run (objects, which need pickle, strings, records, ...), a shape with
    more than MAX_ELEMENTS elements, or fewer data bytes than its header says (truncated). The
    header is checked against the file's size before the data is read, so nothing is allocated
    for a size the file does not hold. A pipe is read whole first."""
    from .ir import DTYPES, MAX_ELEMENTS
    fmt = np.lib.format
    save = "save the array with numpy.save"

    def fail(problem: str, fix: str = save) -> InputError:
        return InputError(f"{what}: {file} {problem}; {fix}")

    try:
        with open(file, "rb") as f:
            # a pipe (--input x=/dev/stdin) has no size until it is read
            src = f if stat.S_ISREG(os.fstat(f.fileno()).st_mode) else io.BytesIO(f.read())
            size = os.fstat(f.fileno()).st_size if src is f else len(src.getbuffer())
            head = io.BytesIO(src.read(NPY_HEADER_BYTES))  # whatever the header's length field says
            try:
                version = fmt.read_magic(head)
                if version not in ((1, 0), (2, 0)):
                    raise fail(f"is a .npy file of format version {version[0]}.{version[1]}, which edgec "
                               "does not read (it reads 1.0 and 2.0)")
                read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, fortran_order, dtype = read_header(head)
            except (ValueError, SyntaxError, RecursionError, tokenize.TokenError) as e:  # numpy's parse errors
                raise fail(f"is not a .npy file or its header is damaged ({str(e)[:200]})") from None
            native = dtype.newbyteorder("=")
            if native not in DTYPES.values():
                pickled = " (an object array, which only pickle could read: edgec never unpickles)" \
                    if dtype.hasobject else ""
                raise fail(f"holds dtype {str(dtype)[:80]}{pickled}",
                           f"edgec runs {', '.join(str(d) for d in DTYPES.values())}: save the array as one of them")
            count = math.prod(shape)
            if any(d < 0 for d in shape):
                raise fail(f"has shape {list(shape)} in its header, with a negative dimension")
            if count > MAX_ELEMENTS:
                raise fail(f"has shape {list(shape)} in its header: {count} elements, more than the "
                           f"{MAX_ELEMENTS} edgec allows in one tensor", "pass a smaller array")
            offset = head.tell()
            if size - offset < count * dtype.itemsize:
                raise fail(f"is truncated: its header says {native}{list(shape)}, {count * dtype.itemsize} bytes, "
                           f"but {max(size - offset, 0)} bytes follow the header")
            src.seek(offset)
            data = np.empty(count, dtype=dtype)
            if src.readinto(memoryview(data).cast("B")) != data.nbytes:
                raise fail("changed while it was read")
    except OSError as e:
        raise InputError(f"{what}: cannot read {file} ({e.strerror or e})") from None
    return np.asarray(data.reshape(shape, order="F" if fortran_order else "C"), dtype=native, order="C")


def _read_inputs(items: list[str]) -> dict[str, np.ndarray]:
    """--input NAME=FILE.npy items by name, each read by `read_npy`; a name given twice is an error."""
    feeds = {}
    for item in items:
        name, sep, file = item.rpartition("=")
        if not sep or not name:
            raise InputError(f"--input {item!r}: expected NAME=FILE.npy")
        if name in feeds:
            raise InputError(f"--input {name} is given twice")
        feeds[name] = read_npy(file, f"--input {name}")
    return feeds


def _level(args) -> int:
    return DEFAULT_LEVEL if args.level is None else args.level


# ---- commands -----------------------------------------------------------------------------

def cmd_compile(args) -> int:
    from .driver import compile
    _load_passes(args.load_pass)
    target = args.target or _default_target()
    model = args.model
    if args.quantize or args.calibration or args.max_drop is not None:
        from .driver import load_model
        if args.quantize != "int8":
            raise EdgecError("--calibration needs --quantize int8")
        cal, reverted = _calibrate(args, load_model(args.model, _input_shapes(args))[0])
        model = cal.quantize(keep_float=reverted)
    result = compile(model, target=target, output=args.output, level=_level(args), passes=args.passes,
                     input_shapes=_input_shapes(args), instruments=_instruments(args), bundle=args.bundle,
                     tuning_db=args.tuning_db, force=args.force, jobs=args.jobs, progress=sys.stderr,
                     precision=args.precision)
    if args.tuning_db:
        tuned = sum(rule == "tuned" for rule in result.schedules.values())
        print(f"tuning database {args.tuning_db}: {tuned} of {len(result.schedules)} kernels tuned, "
              "the rest use edgec's default schedules")
        if tuned == 0:
            print("  (it has no records for this target and these schedule rules: records are kept per "
                  "target and per version of the rules; run `edgec tune` again)")
    if args.timing:
        print(result.pass_manager.timing_table(), file=sys.stderr)
        print(f"kernels in the built module: {len(result.kernels)}", file=sys.stderr)
        sized = [k for k in result.artifact.manifest["kernels"] if "code_bytes" in k] if result.artifact else []
        if sized:
            largest = sorted(sized, key=lambda k: (-k["code_bytes"], k["name"]))[:3]
            print(f"machine code: {sum(k['code_bytes'] for k in sized):,} bytes; largest kernels: "
                  + ", ".join(f"{k['name']} {k['code_bytes']:,}" for k in largest), file=sys.stderr)
    how = f"passes {args.passes or 'none'}" if args.passes is not None else f"-O{_level(args)}"
    if args.precision:
        how += f", {args.precision}"
    print(f"compiled {args.model} for {target} ({how}): "
          f"{len(result.graph.nodes)} nodes, {len(result.kernels)} kernels -> {args.output}")
    return 0


def _write_outputs(out_dir: Path, files: list[str], arrays: list[np.ndarray]) -> None:
    """Save each array as out_dir/file: all to temporary files first, then each renamed over its
    file, so that a failed write leaves no partial file and a link in out_dir is replaced, not
    followed out of it."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgecError(f"-o {out_dir}: cannot create the directory ({e.strerror or e})") from None
    temps: list[Path] = []
    try:
        for file, arr in zip(files, arrays):
            temps.append(out_dir / f".{file}.{os.getpid()}.tmp")
            with open(temps[-1], "xb") as f:
                np.save(f, arr)
        for tmp, file in zip(temps, files):
            os.replace(tmp, out_dir / file)
    except OSError as e:
        raise EdgecError(f"-o {out_dir}: cannot write {file} ({e.strerror or e}); "
                         "choose another directory") from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def cmd_run(args) -> int:
    from .driver import load, output_files
    art = load(args.artifact, threads=args.threads)
    feeds = _read_inputs(args.input)
    out_dir = args.output
    if out_dir is not None and (out_dir.exists() or out_dir.is_symlink()) and not out_dir.is_dir():
        raise EdgecError(f"-o {out_dir} exists and is not a directory; name a directory for the outputs")
    outputs = art.run(feeds)
    files = output_files(list(outputs))
    if out_dir is not None:
        _write_outputs(out_dir, files, list(outputs.values()))
    for (name, arr), file in zip(outputs.items(), files):
        stats = f"min {arr.min():.6g} max {arr.max():.6g} mean {arr.mean():.6g}" if arr.size else "empty"
        print(f"{name}: {arr.dtype}{list(arr.shape)}  {stats}" + (f"  -> {out_dir / file}" if out_dir else ""))
    return 0


def cmd_profile(args) -> int:
    import json
    from edgec.targets.profile import profile
    from .driver import load
    report = profile(load(args.artifact, threads=args.threads), runs=args.runs)
    print(json.dumps(report.as_json(), indent=2) if args.json else report.format())
    return 0


def cmd_opt(args) -> int:
    from .driver import load_model
    from .files import write_text
    from .passmanager import PassManager, resolve_pipeline
    from .text import print_ir
    _load_passes(args.load_pass)
    pm = PassManager(resolve_pipeline(args.target or _default_target(), _level(args), args.passes, args.precision),
                     _instruments(args))
    graph = pm.run(load_model(args.model, _input_shapes(args))[0])
    text = print_ir(graph, full_constants=args.full_constants)
    if args.timing:
        print(pm.timing_table(), file=sys.stderr)
    if args.output:
        write_text(args.output, text, "opt -o")
    else:
        sys.stdout.write(text)
    return 0


def cmd_view(args) -> int:
    from .files import write_text
    from .passmanager import resolve_pipeline
    from .view import check_overlay, compare_overlay, load_graphs, profile_overlay, render_html
    _load_passes(args.load_pass)
    path = Path(args.model)
    pipeline = None  # an .eir file is drawn as it is unless a pipeline is asked for
    if not path.is_dir() and (path.suffix != ".eir" or args.level is not None or args.passes):
        pipeline = resolve_pipeline(args.target or _default_target(), _level(args), args.passes)
    profile = profile_overlay(args.profile) if args.profile else None
    compare = compare_overlay(args.compare) if args.compare else None
    graphs = load_graphs(path, _input_shapes(args), pipeline)
    for overlay, option, file in ((profile, "--profile", args.profile), (compare, "--compare", args.compare)):
        if overlay is not None:
            check_overlay(overlay, graphs[-1][1], f"{option} {file}")
    write_text(args.output, render_html(graphs, profile, compare), "view -o")
    print(f"{args.output}: {len(graphs[-1][1].nodes)} nodes" + (f", {len(graphs)} graphs" if len(graphs) > 1 else ""))
    return 0


def _calibration_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("int8 quantization")
    g.add_argument("--calibration", metavar="DATA",
                   help="calibration inputs: a .npz (input name -> array with a leading sample axis) "
                        "or a directory of .npy/.npz files, one sample each")
    g.add_argument("--method", default="minmax", choices=("minmax", "percentile", "entropy", "mse"),
                   help="how activation ranges are chosen (default minmax)")
    g.add_argument("--percentile", type=float, default=99.99, help="for --method percentile (default 99.99)")
    g.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per output channel")
    g.add_argument("--activations", default="u8", choices=("u8", "i8"), help="activation type (default u8)")
    g.add_argument("--exclude", action="append", default=[], metavar="NODE|OPTYPE",
                   help="keep this ONNX node, or every node of this edgec op type, in float (repeatable)")
    g.add_argument("--op-types", default=None, metavar="OP,OP",
                   help="quantize only these edgec op types (conv, dense, matmul, add, ...)")
    g.add_argument("--max-drop", type=float, default=None, metavar="X",
                   help="accuracy budget: revert the most damaging nodes to float until the metric drops "
                        "by at most X from fp32 (top1: percentage points; sqnr: noise in percent of the signal)")
    g.add_argument("--metric", default="top1", metavar="top1|sqnr|FILE.py",
                   help="for --max-drop (default top1); FILE.py defines score(outputs, labels), higher is better")
    g.add_argument("--validation", default=None, metavar="DATA",
                   help="samples --max-drop and --report measure on, like --calibration (default: the calibration data)")
    g.add_argument("--labels", type=Path, default=None, metavar="FILE.npy",
                   help="one label per validation sample: top1 is then accuracy, not agreement with fp32")
    g.add_argument("--eval-samples", type=_positive_int, default=16, metavar="N",
                   help="validation samples --max-drop and --report measure on (default 16)")


def _calibrate(args, graph):
    """(calibration, the nodes kept in float by --max-drop)."""
    from .quantization import calibrate, fit_budget
    if not args.calibration:
        raise EdgecError("int8 quantization needs calibration inputs: --calibration DATA (.npz or a directory "
                         "of .npy/.npz files)")
    cal = calibrate(graph, args.calibration, method=args.method, percentile=args.percentile,
                    per_channel=not args.per_tensor, activations=args.activations, exclude=args.exclude,
                    op_types=args.op_types.split(",") if args.op_types else None, progress=True)
    if args.max_drop is None:
        return cal, []
    samples, labels = _validation(args, graph)
    b = fit_budget(cal, samples, args.max_drop, args.metric, labels, progress=True)
    print(f"accuracy budget ({b.metric}, {len(samples)} samples): fp32 {b.fp32:.3f}, int8 {b.int8:.3f}, "
          f"{'within' if b.drop <= args.max_drop else 'NOT within'} {args.max_drop} after reverting "
          f"{len(b.reverted)} node(s) to float: {b.final:.3f}")
    for i in b.reverted:
        print(f"  float: {cal.node(i).describe()} (alone it cost {b.impact[i]:.3f})")
    return cal, b.reverted


def _validation(args, graph):
    """The samples (and labels) --max-drop and --report measure on."""
    from .quantization import load_samples
    samples = load_samples(args.validation or args.calibration, graph)
    labels = None
    if args.labels is not None:
        labels = read_npy(args.labels, "--labels").reshape(-1)
        if len(labels) != len(samples):
            raise InputError(f"--labels {args.labels} has {len(labels)} labels for {len(samples)} validation samples")
        labels = labels[:args.eval_samples]
    return samples[:args.eval_samples], labels


def cmd_quantize(args) -> int:
    from .driver import load_model
    from .files import write_text
    from .quantization import format_report, report
    from .text import print_ir
    out = args.output
    if out.suffix not in (".eir", ".onnx"):
        raise EdgecError(f"-o {out}: name an .eir (edgec IR) or .onnx (QDQ ONNX) file")
    if args.report is not None and args.report.suffix not in (".md", ".json"):
        raise EdgecError(f"--report {args.report}: name a .md or .json file")
    graph = load_model(args.model, _input_shapes(args))[0]
    cal, reverted = _calibrate(args, graph)
    qgraph = cal.quantize(keep_float=reverted)
    if out.suffix == ".eir":
        write_text(out, print_ir(qgraph, full_constants=True), "quantize -o")
    else:
        from .onnx_export import export_onnx
        export_onnx(qgraph, out, what="quantize -o")
    print(f"quantized {len(cal.nodes) - len(reverted)} of {len(cal.nodes) + len(cal.skipped)} computing nodes "
          f"({cal.method}, {cal.samples} calibration samples) -> {out}")
    for i, why in sorted(cal.skipped.items()):
        print(f"  float: {cal.node(i).describe()}: {why}")
    if args.report is not None:
        samples, _ = _validation(args, graph)
        rep = report(cal, samples, progress=True)
        write_text(args.report, format_report(rep, args.report.suffix), "quantize --report")
        print(f"report ({len(samples)} samples): {args.report}")
    return 0


def cmd_verify(args) -> int:
    from .files import read_npz
    from .verify import bisect, verify_model
    _load_passes(args.load_pass)
    feeds = read_npz(args.inputs, "--inputs") if args.inputs is not None else _read_inputs(args.input) or None
    target = args.target or _default_target()
    if args.bisect:
        found = bisect(args.model, target=target, level=_level(args), passes=args.passes,
                       input_shapes=_input_shapes(args), inputs=feeds, precision=args.precision)
        print(found.format())
        return 0 if found.ok else 1
    report = verify_model(args.model, target=target, level=_level(args), passes=args.passes,
                          input_shapes=_input_shapes(args), inputs=feeds, precision=args.precision)
    print(report.format())
    return 0 if report.ok else 1


def cmd_check_pass(args) -> int:
    from . import testing
    _load_passes([args.file] if args.file else [])
    pipeline = testing.pipeline_of(args.passes)
    if args.replay is not None:
        ok, line = testing.replay(args.replay, pipeline, args.seed or 0)
        print(line)
        return 0 if ok else 1
    result = testing.check_pass(pipeline, args.family, args.examples, args.seed, args.out)
    print(result.format())
    return 0 if result.ok else 1


def cmd_compare(args) -> int:
    import json
    from .compare import compare_model
    from .files import read_npz
    _load_passes(args.load_pass)
    feeds = read_npz(args.inputs, "--inputs") if args.inputs is not None else None
    report = compare_model(args.model, target=args.target or _default_target(), level=_level(args),
                           passes=args.passes, inputs=feeds, input_shapes=_input_shapes(args), bisect=args.bisect,
                           compiled=args.compiled)
    print(json.dumps(report.as_json(), indent=1) if args.json else report.format())
    return 0 if report.ok else 1


def cmd_inspect(args) -> int:
    from .inspect import inspect_artifact, inspect_model
    if Path(args.model).is_dir():  # an artifact: its kernels, and a CUDA library's device code
        print(inspect_artifact(args.model).format())
        return 0
    print(inspect_model(args.model, _input_shapes(args)).format())
    return 0


def cmd_diff(args) -> int:
    from .diff import run
    report, equal = run(args.paths, as_json=args.json, html_file=args.html)
    print(report)
    return 0 if equal else 1


def cmd_passes(args) -> int:
    from .passmanager import PASSES, _load_builtin_passes, option_spec
    _load_passes(args.load_pass)
    _load_builtin_passes()
    for name in sorted(PASSES):
        cls = PASSES[name]
        opts = ", ".join(option_spec(cls, k).describe(k) for k in cls.options)
        print(f"{name:<22} {cls.summary}" + (f"  [{opts}]" if opts else ""))
    return 0


def cmd_targets(args) -> int:
    from edgec.targets import all_target_names, get_target
    default = _default_target()
    for name in all_target_names():
        t = get_target(name, detect=False)  # the host's CPU is detected (by TVM) only to compile for it
        aliases = f" (aliases: {', '.join(t.aliases)})" if t.aliases else ""
        mark = " [default]" if name == default else ""
        vector = "vector 256 or 512 bits" if name == "host" else f"vector {t.vector_bits} bits"
        tvm = "tvm llvm for this machine's CPU (detected when compiling)" if name == "host" else f"tvm {t.tvm}"
        print(f"{t.name:<18} {t.description}{aliases}{mark}")
        if t.kind == "cuda":
            print(f"{'':<18} CUDA {t.cuda_arch}, host {t.host_cpu} ({t.arch}), built for {t.jetpack}, "
                  f"fp16 {'yes' if t.fp16 else 'no'}, int8 dot product (dp4a) {'yes' if t.dotprod else 'no'}, "
                  f"layout {t.layout}")
            continue
        print(f"{'':<18} arch {t.arch}, layout {t.layout}, {vector}, "
              f"int8 dot product {'yes' if t.dotprod else 'no'}, {tvm}")
    return 0


def cmd_ops(args) -> int:
    from .ops import ONNX_CONVERTERS, OPS
    print(f"{len(OPS)} edgec ops, {len(ONNX_CONVERTERS)} ONNX op types imported")
    traits = ("commutative", "activation", "anchor", "layout_sensitive", "macs")
    for name in sorted(OPS):
        has = [t.replace("_", "-") for t in traits if getattr(OPS[name], t)]
        print(f"  {name:<24} {OPS[name].kind:<12} {' '.join(has)}".rstrip())
    return 0


def cmd_tune(args) -> int:
    from edgec.targets import get_target
    from edgec.targets.schedules.tuning import tune_graph
    from .onnx_import import import_onnx
    from .passmanager import optimize
    _load_passes(args.load_pass)
    target = get_target(args.target or _default_target())
    if target.kind != "cpu":
        raise EdgecError(f"edgec tune supports CPU targets; '{target.name}' is {target.kind}")
    if args.trials < 1:
        raise EdgecError(f"--trials must be at least 1, got {args.trials}")
    if args.key and not args.rpc:
        raise EdgecError("--key needs --rpc HOST:PORT (the RPC tracker's address)")
    graph = optimize(import_onnx(args.model, _input_shapes(args)), target.name, _level(args), args.passes)
    report = tune_graph(graph, target, args.db, args.trials, rpc=args.rpc, key=args.key, threads=args.threads)
    print(f"tuned {args.model} for {target.name}: {report.format()}")
    print(f"tuning records in {args.db}; use them with `edgec compile ... --tuning-db {args.db}` "
          "at the same level and target")
    return 0


def cmd_bench(args) -> int:
    from edgec.targets import rpc
    report = rpc.bench(args.artifact, args.rpc, key=args.key, repeat=args.repeat)
    print(report.format() if hasattr(report, "format") else report)
    return 0


# ---- entry point --------------------------------------------------------------------------

def version_text() -> str:
    """edgec's version and TVM's, read from the installed package's metadata (TVM is not loaded)."""
    from importlib import metadata
    from . import __version__
    try:
        tvm = metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        tvm = "not installed"
    return f"edgec {__version__} (TVM {tvm})"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgec", description="Compile ONNX models for edge devices.")
    parser.add_argument("--version", action=_VersionAction, help="print edgec's and TVM's versions and exit")
    debug = argparse.ArgumentParser(add_help=False)  # --debug goes before or after the command
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show Python tracebacks on errors")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="`edgec COMMAND --help` shows its options")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[debug])

    p = command("compile", "compile an ONNX model to an artifact directory")
    p.add_argument("model", help="the ONNX model file")
    p.add_argument("-o", "--output", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--force", action="store_true",
                   help="replace the output directory even if it is not an edgec artifact (its files are lost)")
    p.add_argument("--bundle", action="store_true", help="add the runtime and a runner for the board")
    p.add_argument("--tuning-db", type=Path, default=None, metavar="DIR", help="schedules from `edgec tune`")
    p.add_argument("-j", "--jobs", type=_positive_int, default=None, metavar="N",
                   help="threads that generate the kernels' code (default: all cores)")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="quantize to int8 first (needs --calibration; see `edgec quantize`)")
    _calibration_options(p)
    _add_pipeline_options(p)
    _add_model_options(p)
    _add_instrument_options(p)
    _add_precision_option(p)
    p.set_defaults(func=cmd_compile)

    p = command("run", "run a compiled artifact on .npy inputs")
    p.add_argument("artifact", help="an artifact directory written by `edgec compile`")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="the value of input NAME (repeat for each input)")
    p.add_argument("-o", "--output", type=Path,
                   help="directory for a NAME.npy per output (names made unique file names; each line says which)")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.set_defaults(func=cmd_run)

    p = command("profile", "time each kernel of a compiled artifact (guest instructions under qemu on ARM)")
    p.add_argument("artifact", help="an artifact directory written by `edgec compile`")
    p.add_argument("--runs", type=int, default=None,
                   help="inferences measured (default: 10 on host, medians; 1 on ARM, whose kernel "
                        "instruction counts do not vary)")
    p.add_argument("--threads", type=int, default=None,
                   help="worker threads on host (default: all cores); ARM counts run on one thread")
    p.add_argument("--json", action="store_true", help="print the rows as JSON (stable keys) instead of the table")
    p.set_defaults(func=cmd_profile)

    p = command("tune", "tune the model's kernels (edgec's schedule parameters) into a database")
    p.add_argument("model", help="the ONNX model file")
    p.add_argument("--db", type=Path, required=True, metavar="DIR", help="tuning database (resumable)")
    p.add_argument("--trials", type=int, default=200, help="at most this many measurements in all")
    p.add_argument("--rpc", default=None, metavar="HOST:PORT",
                   help="measure on a TVM RPC server (needed for ARM targets)")
    p.add_argument("--key", default=None, help="device key, when --rpc is an RPC tracker")
    p.add_argument("--threads", type=int, default=None,
                   help="threads the kernels are timed with (default: the runtime's, all cores)")
    _add_pipeline_options(p)
    _add_model_options(p)
    p.set_defaults(func=cmd_tune)

    p = command("opt", "run passes on a model or .eir file and print the IR")
    p.add_argument("model", help="an ONNX model or an .eir IR file")
    p.add_argument("-o", "--output", type=Path, help="write the IR to this file instead of stdout")
    p.add_argument("--full-constants", action="store_true", help="write constants in full (re-runnable)")
    _add_pipeline_options(p)
    _add_model_options(p)
    _add_instrument_options(p)
    _add_precision_option(p)
    p.set_defaults(func=cmd_opt)

    p = command("view", "draw a model, .eir file or --dump-ir directory as a self-contained HTML page")
    p.add_argument("model", help="an ONNX model (optimized as by `edgec opt`), an .eir file (drawn as it is "
                                 "unless -O or --passes is given) or a --dump-ir directory (every pass)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.html", help="the page to write")
    p.add_argument("--profile", type=Path, default=None, metavar="FILE.json",
                   help="colour nodes by their share of the time: the output of `edgec profile DIR --json`")
    p.add_argument("--compare", type=Path, default=None, metavar="FILE.json",
                   help="mark nodes not within tolerance: the output of `edgec compare MODEL --json`")
    _add_pipeline_options(p)
    _add_model_options(p)
    p.set_defaults(func=cmd_view)

    p = command("quantize", "quantize a model to int8 (QDQ form) from calibration inputs")
    p.add_argument("model", help="the ONNX model (or .eir) file")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.eir|OUT.onnx",
                   help="the quantized model: edgec IR (.eir, full constants) or QDQ ONNX (.onnx)")
    p.add_argument("--report", type=Path, default=None, metavar="FILE.md|FILE.json",
                   help="per quantized node: output SQNR, and the model's SQNR and top-1 agreement with "
                        "only that node quantized")
    _calibration_options(p)
    _add_model_options(p)
    p.set_defaults(func=cmd_quantize)

    p = command("verify", "compare interpreter and compiled outputs with ONNX Runtime")
    p.epilog = ("Without --input or --inputs the inputs are seeded random values (edgec.verify.random_inputs): "
                "a 4-D float input with 1 or 3 channels (dim 1 or dim 3: an image) uniform in [0, 1], other "
                "floats standard normal, integers in [0, 10), bools fair. An output no larger than its "
                "tolerance is reported as vacuous (an all-zero result would pass): check it on real inputs.")
    p.add_argument("model", help="the ONNX model file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="the value of input NAME (default: seeded random inputs, see below)")
    g.add_argument("--inputs", type=Path, default=None, metavar="FILE.npz",
                   help="input values by graph input name, as `edgec compare --inputs` takes them")
    p.add_argument("--bisect", action="store_true", help="find the first pass after which outputs diverge")
    _add_pipeline_options(p)
    _add_model_options(p)
    _add_precision_option(p)
    p.set_defaults(func=cmd_verify)

    p = command("check-pass", "check that a pass keeps the outputs of random graphs (shrinks a failure to a reproducer)")
    p.add_argument("file", nargs="?", default=None, metavar="FILE.py",
                   help="the Python file of the pass (loaded as --load-pass does); none for edgec's own passes")
    p.add_argument("--pass", dest="passes", required=True, metavar="NAME",
                   help="the pass to check: its name, or a pipeline such as 'my-pass,dce'")
    p.add_argument("--examples", type=_positive_int, default=100, metavar="N", help="random graphs (default 100)")
    p.add_argument("--family", default=None, metavar="F",
                   help="the graphs: elementwise, cnn, mlp or transformer (default: all)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="draw other graphs (default: the same graphs every run)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where a failure's reproducer goes (default: a new temporary directory, made only then)")
    p.add_argument("--replay", type=Path, default=None, metavar="FILE.eir",
                   help="run the pass on this reproducer (with the .npz of the same name as inputs) and compare")
    p.set_defaults(func=cmd_check_pass)

    p = command("compare", "compare each node of the optimized graph (interpreter, or --compiled) "
                           "with the unoptimized graph")
    p.add_argument("model", help="the ONNX model (or .eir) file")
    p.add_argument("--inputs", type=Path, default=None, metavar="FILE.npz",
                   help="input values by graph input name (default: seeded random inputs)")
    p.add_argument("--bisect", action="store_true", help="name the pass after which each diverging node diverged")
    p.add_argument("--compiled", action="store_true",
                   help="take the optimized side's values from the module compiled for --target (ARM under qemu), "
                        "not the interpreter")
    p.add_argument("--json", action="store_true", help="print the report as JSON (stable keys) instead of the table")
    _add_pipeline_options(p)
    _add_model_options(p)
    p.set_defaults(func=cmd_compare)

    p = command("inspect", "op histogram, parameters, MACs, unsupported ops; or an artifact's kernels")
    p.add_argument("model", help="the ONNX model file, or an artifact directory (`edgec compile -o DIR`): its "
                   "kernels, and for a Jetson target each one's device kernels, their SM, and any PTX or CUDA source")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="fix the shape of a model input (node and MAC counts need every dynamic dim)")
    p.set_defaults(func=cmd_inspect)

    p = command("diff", "compare two IRs node by node, matched by ONNX origin (exit 1 when they differ)")
    p.add_argument("paths", nargs="+", type=Path, metavar="A [B]",
                   help="two ONNX models or .eir files, or one `edgec opt --dump-ir` directory (pass by pass)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", type=Path, default=None, metavar="FILE",
                   help="also write a self-contained page with the two IRs side by side")
    p.set_defaults(func=cmd_diff)

    p = command("passes", "list the registered passes")
    p.add_argument("--load-pass", action="append", default=[], metavar="FILE.py",
                   help="also list the passes of a Python file")
    p.set_defaults(func=cmd_passes)

    p = command("targets", "list the targets")
    p.set_defaults(func=cmd_targets)

    p = command("ops", "list the registered ops")
    p.set_defaults(func=cmd_ops)

    p = command("bench", "time a compiled artifact on a remote device over TVM RPC")
    p.add_argument("artifact", help="an artifact directory written by `edgec compile`")
    p.add_argument("--rpc", required=True, metavar="HOST:PORT", help="the TVM RPC server or tracker")
    p.add_argument("--key", default=None, help="device key, when HOST:PORT is an RPC tracker")
    p.add_argument("--repeat", type=int, default=20, help="timed runs (default 20)")
    p.set_defaults(func=cmd_bench)
    return parser


def _run(argv: list[str] | None) -> int:
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        status = args.func(args)
        interrupt.check()  # a Ctrl-C that TVM turned into a failure it worked around
        return status
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stderr.close()
        return 0
    except (KeyboardInterrupt, Exception) as e:  # noqa: BLE001 - reported below, by kind
        if isinstance(e, KeyboardInterrupt) or interrupt.interrupted():  # TVM reports one as its own error
            interrupt.stop()
            if debug:
                traceback.print_exc()
            print("edgec: interrupted", file=sys.stderr)
            return 130
        if debug:
            raise
        if isinstance(e, EdgecError):
            print(f"edgec: error: {e}", file=sys.stderr)
            return e.exit_code
        print(f"edgec: internal error: {type(e).__name__}: {e}\n"
              "This is a bug in edgec; rerun with --debug for the traceback and report it.", file=sys.stderr)
        return 70


def main(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv) and return the exit status.

    The SIGINT handler of `edgec.interrupt` is installed first, before anything heavy is imported.
    Called from Python with `argv`, the previous handler is restored at the end; as the program,
    Ctrl-C is ignored once the command is over, so that it cannot break the interpreter's shutdown."""
    previous = interrupt.install()
    try:
        return _run(argv)
    finally:
        if previous is not None:
            interrupt.uninstall(signal.SIG_IGN if argv is None else previous)


if __name__ == "__main__":
    sys.exit(main())
