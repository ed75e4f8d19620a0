"""Passes, the pass registry, textual pipelines and the pass manager with its instruments.

A pass is a class with a kebab-case `name`, a one-line `summary`, typed `options` (name ->
default, whose type is the option's type, or name -> `Option(default, choices=..., minimum=...)`
for an option that takes only some values) and `run(graph) -> bool` (changed or not). It keeps
per-run `stats` (a dict of counters) that `--timing` shows. Passes hold no global state: the
manager makes a fresh instance for each run.

    @register_pass
    class MyPass(Pass):
        name = "my-pass"
        summary = "what it does, in one line"
        options = {"limit": Option(8, minimum=1), "mode": Option("fast", choices=("fast", "exact"))}

        def run(self, graph):
            ...
            return changed

Pipelines are strings, `fold-constants{max-size=1024},dce`, which round-trip through
`parse_pipeline` and `format_pipeline`; an unknown pass or option, or a value an option does not
take, is refused there, before anything runs.

Instruments (`Instrument`: before/after-pass hooks) print or dump the IR around passes, time
them, verify after each, and write a reproducer when a pass fails; `Instruments` holds the CLI's
flags and makes them. No IR is printed unless an instrument asks. Files are written whole or not
at all (`edgec.files`); the reproducer's directory is made only when a pass fails.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import EdgecError, PassError, VerifyError, did_you_mean
from .files import check_dir, make_dirs, os_error, write_text
from .ir import Graph, gc_paused


@dataclass(frozen=True)
class Option:
    """A pass option: its default (whose type is the option's type) and the values it may take:
    one of `choices`, or at least `minimum`. `options = {"limit": 8}` is short for `Option(8)`."""
    default: Any
    choices: tuple | None = None
    minimum: int | float | None = None

    def check(self, where: str, value: Any) -> Any:
        """`value` if this option takes it, else an EdgecError naming `where` (`pass{key=value}`)."""
        kind = type(self.default)
        kinds = (int, float) if kind is float else (kind,)
        if not isinstance(value, kinds) or isinstance(value, bool) != (kind is bool):
            raise EdgecError(f"option {where}: expected a {kind.__name__}")
        if self.choices is not None and value not in self.choices:
            raise EdgecError(f"option {where}: the value must be one of {', '.join(map(_format_value, self.choices))}")
        if self.minimum is not None and value < self.minimum:
            raise EdgecError(f"option {where}: the value must be at least {self.minimum}")
        return value

    def describe(self, key: str) -> str:
        """`key=default`, with the values it takes: for `edgec passes`."""
        takes = (f" (one of: {', '.join(map(_format_value, self.choices))})" if self.choices is not None
                 else f" (at least {self.minimum})" if self.minimum is not None else "")
        return f"{key}={_format_value(self.default)}{takes}"


def option_spec(cls: type["Pass"], key: str) -> Option:
    """The `Option` of pass class `cls` called `key`; an EdgecError for an option it lacks."""
    if key not in cls.options:
        raise EdgecError(f"pass '{cls.name}' has no option '{key}'{did_you_mean(key, cls.options)}; its options: "
                         f"{', '.join(cls.options) or 'none'}")
    spec = cls.options[key]
    return spec if isinstance(spec, Option) else Option(spec)


class Pass:
    name: str = ""
    summary: str = ""
    options: dict[str, Any] = {}  # name -> default or Option

    def __init__(self, **opts: Any):
        for key, value in opts.items():
            option_spec(type(self), key).check(f"{self.name}{{{key}={_format_value(value)}}}", value)
        self.opts = {**{key: option_spec(type(self), key).default for key in self.options}, **opts}
        self.stats: dict[str, int] = {}

    def count(self, stat: str, n: int = 1) -> None:
        self.stats[stat] = self.stats.get(stat, 0) + n

    def run(self, graph: Graph) -> bool:
        raise NotImplementedError


PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", cls.name or ""):
        raise ValueError(f"pass name {cls.name!r} must be kebab-case")
    if cls.name in PASSES and PASSES[cls.name] is not cls:
        raise ValueError(f"pass {cls.name!r} is registered twice")
    PASSES[cls.name] = cls
    return cls


def _load_builtin_passes() -> None:
    import edgec.passes  # noqa: F401  (registers the built-in passes)


def get_pass(name: str) -> type[Pass]:
    _load_builtin_passes()
    if name not in PASSES:
        raise EdgecError(f"unknown pass '{name}'{did_you_mean(name, PASSES)}; known passes: "
                         f"{', '.join(sorted(PASSES))} (see `edgec passes`)")
    return PASSES[name]


def _convert_option(cls: type[Pass], key: str, text: str) -> Any:
    """The value of `key=text` in a pipeline string, checked against the option's `Option`."""
    spec = option_spec(cls, key)
    where = f"{cls.name}{{{key}={text}}}"
    kind = type(spec.default)
    try:
        if kind is bool:
            if text not in ("true", "false"):
                raise ValueError
            value = text == "true"
        else:
            value = kind(text)
    except ValueError:
        raise EdgecError(f"option {where}: expected a {kind.__name__}") from None
    return spec.check(where, value)


def parse_pipeline(text: str) -> list[tuple[str, dict[str, Any]]]:
    """`a,b{k=v,k2=v2},c` -> [(name, options), ...]; unknown passes or options are errors."""
    items: list[tuple[str, dict[str, Any]]] = []
    pos, text = 0, text.strip()
    item = re.compile(r"\s*([a-z][a-z0-9-]*)\s*(?:\{([^}]*)\})?\s*(,|$)")
    while pos < len(text):
        m = item.match(text, pos)
        if not m:
            raise EdgecError(f"cannot parse pipeline {text!r} at {text[pos:]!r}; expected "
                             "'pass-a,pass-b{option=value}'")
        cls = get_pass(m.group(1))
        opts = {}
        for kv in filter(None, (s.strip() for s in (m.group(2) or "").split(","))):
            k, sep, v = kv.partition("=")
            if not sep:
                raise EdgecError(f"pipeline option {kv!r} of '{cls.name}' needs the form key=value")
            opts[k.strip()] = _convert_option(cls, k.strip(), v.strip())
        items.append((cls.name, opts))
        pos = m.end()
    return items


def _format_value(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def format_pipeline(items: list[tuple[str, dict[str, Any]]]) -> str:
    return ",".join(name + ("{" + ",".join(f"{k}={_format_value(v)}" for k, v in sorted(o.items())) + "}"
                            if o else "") for name, o in items)


@dataclass
class PassRecord:
    """What the timing instrument keeps for one pass run."""
    name: str
    seconds: float
    changed: bool
    nodes_before: int
    nodes_after: int
    stats: dict[str, int]


class Instrument:
    """Hooks the pass manager calls around each pass, as TVM's PassInstrument and MLIR's
    PassInstrumentation: override what you need. Printing, dumping, timing, verifying and the
    reproducer are instruments (below), and so is `edgec verify --bisect`'s check of the outputs
    after each pass (`edgec.verify._Bisect`).

    `checks = True`: an exception from `after_pass` is the pass's failure (the verifier);
    otherwise it is the instrument's own (a dump that cannot be written)."""

    checks = False

    def enter(self, graph: Graph) -> None:
        """Before the first pass."""

    def before_pass(self, step: int, label: str, graph: Graph) -> None:
        """Before pass number `step` (from 1), `label` its pipeline text (`name{options}`)."""

    def after_pass(self, step: int, label: str, graph: Graph, record: PassRecord) -> None:
        """After the pass ran (and returned), with what the manager recorded of the run."""

    def failed(self, step: int, label: str, error: Exception, pass_input: Callable[[], Graph]) -> str | None:
        """The pass failed with `error`; `pass_input()` rebuilds the graph the pass was given
        (from the manager's fingerprint of it). A line to add to the error message, or None."""
        return None


class Timing(Instrument):
    """Keeps a `PassRecord` per pass run (`--timing`'s table). Always on: it costs a clock read."""

    def __init__(self):
        self.records: list[PassRecord] = []

    def after_pass(self, step, label, graph, record):
        self.records.append(record)


class VerifyIR(Instrument):
    """Verifies the graph after each pass (types, uses, the IR's invariants)."""

    checks = True

    def after_pass(self, step, label, graph, record):
        from .verifier import verify
        verify(graph)


class PrintIR(Instrument):
    """Prints the IR before or after the passes named (or after all, or after those that changed it)."""

    def __init__(self, before=(), after=(), after_all: bool = False, after_change: bool = False,
                 out: Callable[[str], None] = print):
        self.before, self.after = set(before), set(after)
        self.after_all, self.after_change, self.out = after_all, after_change, out

    def before_pass(self, step, label, graph):
        from .text import print_ir
        if label.split("{")[0] in self.before:
            self.out(f"// -----// IR before {label} //----- //\n{print_ir(graph)}")

    def after_pass(self, step, label, graph, record):
        from .text import print_ir
        if record.name in self.after or self.after_all or (self.after_change and record.changed):
            self.out(f"// -----// IR after {label} //----- //\n{print_ir(graph)}")


DUMP_FILE = re.compile(r"(\d+)-.+\.eir")  # what DumpIR writes: 00-input.eir, then NN-<pass>.eir


def dump_files(folder: Path) -> list[Path]:
    """The files `DumpIR` wrote into `folder`, in step order (by number, so 100- comes after 99-);
    [] if there are none. `edgec diff DIR`, `edgec view DIR` and the Model Explorer adapter read
    dump directories through this."""
    files = [(int(m.group(1)), p.name, p) for p in folder.iterdir()
             if p.is_file() and (m := DUMP_FILE.fullmatch(p.name))]
    return [p for _, _, p in sorted(files)]


class DumpIR(Instrument):
    """Writes the input IR and the IR after each pass into a directory, numbered (`dump_files`
    reads them back in order)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        check_dir(self.folder, "--dump-ir")

    def enter(self, graph):
        from .text import print_ir
        try:
            make_dirs(self.folder)
        except OSError as e:
            raise os_error("--dump-ir", self.folder, e) from None
        write_text(self.folder / "00-input.eir", print_ir(graph), "--dump-ir")

    def after_pass(self, step, label, graph, record):
        from .text import print_ir
        write_text(self.folder / f"{step:02d}-{record.name}.eir", print_ir(graph), "--dump-ir")


class Reproducer(Instrument):
    """When a pass fails, writes its input IR (whole constants) and the pass into `folder`, or
    (True) into a new temporary directory: the directory is made only then. It keeps the
    pass's input from the manager's fingerprint of it (`text.fingerprint`), not as printed text."""

    def __init__(self, folder: bool | Path = True):
        self.folder = folder
        if not isinstance(folder, bool):
            check_dir(Path(folder), "--reproducer-dir")

    def failed(self, step, label, error, pass_input):
        from .text import print_ir
        try:
            text = print_ir(pass_input(), full_constants=True)
        except VerifyError as e:
            return f"no reproducer: the pass's input IR was not well-formed ({e})"
        try:
            return f"reproducer (input IR and pipeline): {self._write(step, label, text)}"
        except EdgecError as e:  # the pass's failure is the news: say why there is no reproducer
            return f"no reproducer: {e}"

    def _write(self, step: int, label: str, text: str) -> Path:
        folder = Path(tempfile.gettempdir()) if self.folder is True else Path(self.folder)
        try:
            if self.folder is True:
                folder = Path(tempfile.mkdtemp(prefix="edgec-reproducer-"))
            make_dirs(folder)
        except OSError as e:
            raise os_error("--reproducer-dir", folder, e) from None
        path = folder / f"edgec-reproducer-{step:02d}-{label.split('{')[0]}.eir"
        write_text(path, f"// edgec reproducer: run with `edgec opt {path.name} --passes '{label}'`\n"
                         f"// pipeline: {label}\n" + text, "--reproducer-dir")
        return path


@dataclass
class Instruments:
    """The CLI's instrument flags, made into instruments by `build()`.

    `reproducer`: when a pass fails, write its input IR and the pipeline into this directory, or
    (True) into a new temporary directory, made only then; False: no reproducer."""
    verify: bool = True
    print_before: set[str] = field(default_factory=set)
    print_after: set[str] = field(default_factory=set)
    print_after_all: bool = False
    print_after_change: bool = False
    dump_dir: Path | None = None
    reproducer: bool | Path = False
    out: Callable[[str], None] = print

    def build(self) -> list[Instrument]:
        made: list[Instrument] = [VerifyIR()] if self.verify else []
        if self.print_before or self.print_after or self.print_after_all or self.print_after_change:
            made.append(PrintIR(self.print_before, self.print_after, self.print_after_all,
                                self.print_after_change, self.out))
        if self.dump_dir is not None:
            made.append(DumpIR(self.dump_dir))
        if self.reproducer is not False:
            made.append(Reproducer(self.reproducer))
        return made


class PassManager:
    """Runs a pipeline on a graph with instruments: an `Instruments` (the CLI's flags; default:
    verify after each pass) or a list of `Instrument`s. A `Timing` instrument is always first
    (`records`, `timing_table`)."""

    def __init__(self, pipeline: str, instruments: Instruments | list[Instrument] | None = None):
        self.items = parse_pipeline(pipeline)
        chosen = (instruments or Instruments())
        self.timing = Timing()
        self.instruments: list[Instrument] = [self.timing, *(chosen.build() if isinstance(chosen, Instruments)
                                                             else chosen)]

    @property
    def records(self) -> list[PassRecord]:
        return self.timing.records

    @gc_paused()
    def run(self, graph: Graph) -> Graph:
        """Run the pipeline in place on `graph` and return it. A pass that returns False must
        leave what the printed IR shows unchanged: the manager compares `text.fingerprint`
        before and after it (linear in the graph, far cheaper than printing)."""
        from .text import fingerprint, from_fingerprint
        for ins in self.instruments:
            ins.enter(graph)
        for step, (name, opts) in enumerate(self.items, start=1):
            p = get_pass(name)(**opts)
            label = format_pipeline([(name, opts)])
            for ins in self.instruments:
                ins.before_pass(step, label, graph)
            payloads: list = []  # the constants, by reference: the reproducer rebuilds the input from them
            before = fingerprint(graph, payloads)  # what the printed IR shows, without printing it
            nodes_before = len(graph.nodes)
            start = time.perf_counter()
            try:
                changed = p.run(graph)
                if not isinstance(changed, bool):
                    raise TypeError(f"pass '{name}' returned {changed!r}; run() must return True or False")
                record = PassRecord(name, time.perf_counter() - start, changed, nodes_before, len(graph.nodes),
                                    p.stats)
                if changed is False and fingerprint(graph) != before:
                    raise PassError(f"pass '{name}' changed the graph but returned False")
                for ins in self.instruments:
                    if ins.checks:
                        ins.after_pass(step, label, graph, record)
            except Exception as e:  # noqa: BLE001 - any failure in a pass is reported the same way
                raise self._failure(step, label, e, lambda: from_fingerprint(before, payloads)) from e
            for ins in self.instruments:
                if not ins.checks:
                    ins.after_pass(step, label, graph, record)
        return graph

    def _failure(self, step: int, label: str, error: Exception, pass_input: Callable[[], Graph]) -> PassError:
        """The error naming the pass and its predecessors, with what the instruments add."""
        done = format_pipeline(self.items[:step - 1]) or "(none)"
        lines = [f"pass '{label}' (step {step}) failed: {error}", f"passes before it: {done}"]
        lines += [line for ins in self.instruments if (line := ins.failed(step, label, error, pass_input))]
        return PassError("\n  ".join(lines))

    def timing_table(self) -> str:
        rows = ["| pass | wall ms | changed | nodes | statistics |", "|---|---:|---|---|---|"]
        for r in self.records:
            stats = ", ".join(f"{k}={v}" for k, v in sorted(r.stats.items()))
            rows.append(f"| {r.name} | {r.seconds * 1000:.2f} | {'yes' if r.changed else 'no'} | "
                        f"{r.nodes_before} -> {r.nodes_after} | {stats} |")
        return "\n".join(rows)


def resolve_pipeline(target: str = "host", level: int | None = None, passes: str | None = None,
                     precision: str | None = None) -> str:
    """The pipeline a compile runs: `passes` when given, else the target's pipeline for `level`
    (default 2), with `convert-precision{to=<precision>}` in it for `precision` "fp16" or "mixed"
    (GPU targets only: `Target.precision_pipeline`). The one place where a level becomes passes:
    compile, optimize, verify, tune, opt and the ONNX backend all ask here."""
    from edgec.targets import get_target
    if passes is not None:
        if precision is not None:
            raise EdgecError(f"--precision and --passes together: --passes is the whole pipeline; put "
                             f"convert-precision{{to={precision}}} into it (after convert-layout) instead")
        return passes
    tgt = get_target(target, detect=False)
    pipeline = tgt.pipeline(2 if level is None else level)
    return pipeline if precision is None else tgt.precision_pipeline(pipeline, precision)


def optimize(graph: Graph, target: str = "host", level: int | None = 2, passes: str | None = None,
             instruments: Instruments | None = None, precision: str | None = None) -> Graph:
    """Run the target's pipeline for `level` (or the explicit `passes`) on a copy of `graph`;
    `precision`: see `resolve_pipeline`."""
    return PassManager(resolve_pipeline(target, level, passes, precision), instruments).run(graph.copy())
