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

Instruments (`Instruments`, the CLI's flags) print or dump the IR around passes, time them,
verify after each, and write a reproducer when a pass fails. Files are written whole or not at
all (`edgec.files`); the reproducer's directory is made only when a pass fails.
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


@dataclass
class Instruments:
    """What the pass manager does around each pass (the CLI's instrument flags).

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


class PassManager:
    def __init__(self, pipeline: str, instruments: Instruments | None = None):
        self.items = parse_pipeline(pipeline)
        self.instruments = instruments or Instruments()
        self.records: list[PassRecord] = []
        if self.instruments.dump_dir is not None:
            check_dir(Path(self.instruments.dump_dir), "--dump-ir")
        if not isinstance(self.instruments.reproducer, bool):
            check_dir(Path(self.instruments.reproducer), "--reproducer-dir")

    @gc_paused()
    def run(self, graph: Graph) -> Graph:
        """Run the pipeline in place on `graph` and return it. A pass that returns False must
        leave what the printed IR shows unchanged: the manager compares `text.fingerprint`
        before and after it (linear in the graph, far cheaper than printing)."""
        from .verifier import verify
        from .text import fingerprint, print_ir
        ins = self.instruments
        if ins.dump_dir is not None:
            try:
                make_dirs(Path(ins.dump_dir))
            except OSError as e:
                raise os_error("--dump-ir", Path(ins.dump_dir), e) from None
            write_text(Path(ins.dump_dir) / "00-input.eir", print_ir(graph), "--dump-ir")
        for step, (name, opts) in enumerate(self.items, start=1):
            p = get_pass(name)(**opts)
            label = format_pipeline([(name, opts)])
            payloads: list | None = [] if ins.reproducer is not False else None
            before = fingerprint(graph, payloads)  # what the printed IR shows, without printing it
            snapshot = (before, payloads) if payloads is not None else None  # for the reproducer
            if name in ins.print_before:
                ins.out(f"// -----// IR before {label} //----- //\n{print_ir(graph)}")
            nodes_before = len(graph.nodes)
            start = time.perf_counter()
            try:
                changed = p.run(graph)
                if not isinstance(changed, bool):
                    raise TypeError(f"pass '{name}' returned {changed!r}; run() must return True or False")
                if ins.verify:
                    verify(graph)
            except Exception as e:  # noqa: BLE001 - any failure in a pass is reported the same way
                raise self._failure(step, label, snapshot, e) from e
            seconds = time.perf_counter() - start
            if changed is False and fingerprint(graph) != before:
                raise self._failure(step, label, snapshot, PassError(
                    f"pass '{name}' changed the graph but returned False"))
            self.records.append(PassRecord(name, seconds, changed, nodes_before, len(graph.nodes), p.stats))
            shown = name in ins.print_after or ins.print_after_all or (ins.print_after_change and changed)
            after = print_ir(graph) if shown or ins.dump_dir is not None else ""
            if shown:
                ins.out(f"// -----// IR after {label} //----- //\n{after}")
            if ins.dump_dir is not None:
                write_text(Path(ins.dump_dir) / f"{step:02d}-{name}.eir", after, "--dump-ir")
        return graph

    def _failure(self, step: int, label: str, snapshot: tuple | None, error: Exception) -> PassError:
        """The error naming the pass and its predecessors; with a snapshot (the pass's input as a
        fingerprint and its constants), the reproducer is rebuilt from it and written."""
        from .text import from_fingerprint, print_ir
        done = format_pipeline(self.items[:step - 1]) or "(none)"
        message = f"pass '{label}' (step {step}) failed: {error}\n  passes before it: {done}"
        if snapshot is not None:
            try:
                text = print_ir(from_fingerprint(*snapshot), full_constants=True)
            except VerifyError as e:
                return PassError(message + f"\n  no reproducer: the pass's input IR was not well-formed ({e})")
            try:
                message += f"\n  reproducer (input IR and pipeline): {self._write_reproducer(step, label, text)}"
            except EdgecError as e:  # the pass's failure is the news: say why there is no reproducer
                message += f"\n  no reproducer: {e}"
        return PassError(message)

    def _write_reproducer(self, step: int, label: str, text: str) -> Path:
        """Write the failing pass's input IR `text` and pipeline; the directory is made now."""
        where = self.instruments.reproducer
        folder = Path(tempfile.gettempdir()) if where is True else Path(where)
        try:
            if where is True:
                folder = Path(tempfile.mkdtemp(prefix="edgec-reproducer-"))
            make_dirs(folder)
        except OSError as e:
            raise os_error("--reproducer-dir", folder, e) from None
        path = folder / f"edgec-reproducer-{step:02d}-{label.split('{')[0]}.eir"
        write_text(path, f"// edgec reproducer: run with `edgec opt {path.name} --passes '{label}'`\n"
                         f"// pipeline: {label}\n" + text, "--reproducer-dir")
        return path

    def timing_table(self) -> str:
        rows = ["| pass | wall ms | changed | nodes | statistics |", "|---|---:|---|---|---|"]
        for r in self.records:
            stats = ", ".join(f"{k}={v}" for k, v in sorted(r.stats.items()))
            rows.append(f"| {r.name} | {r.seconds * 1000:.2f} | {'yes' if r.changed else 'no'} | "
                        f"{r.nodes_before} -> {r.nodes_after} | {stats} |")
        return "\n".join(rows)


def resolve_pipeline(target: str = "host", level: int | None = None, passes: str | None = None) -> str:
    """The pipeline a compile runs: `passes` when given, else the target's pipeline for `level`
    (default 2). The one place where a level becomes passes: compile, optimize, verify, tune, opt
    and the ONNX backend all ask here."""
    if passes is not None:
        return passes
    from edgec.targets import get_target
    return get_target(target, detect=False).pipeline(2 if level is None else level)


def optimize(graph: Graph, target: str = "host", level: int | None = 2, passes: str | None = None,
             instruments: Instruments | None = None) -> Graph:
    """Run the target's pipeline for `level` (or the explicit `passes`) on a copy of `graph`."""
    return PassManager(resolve_pipeline(target, level, passes), instruments).run(graph.copy())
