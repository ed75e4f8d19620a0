"""Passes, the pass registry, textual pipelines and the pass manager with its instruments.

A pass is a class with a kebab-case `name`, a one-line `summary`, typed `options` (name ->
default; the default's type is the option's type) and `run(graph) -> bool` (changed or not).
It keeps per-run `stats` (a dict of counters) that `--timing` shows. Passes hold no global
state: the manager makes a fresh instance for each run.

    @register_pass
    class MyPass(Pass):
        name = "my-pass"
        summary = "what it does, in one line"
        options = {"limit": 8}

        def run(self, graph):
            ...
            return changed

Pipelines are strings, `fold-constants{max-size=1024},dce`, which round-trip through
`parse_pipeline` and `format_pipeline`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import EdgecError, PassError, VerifyError
from .ir import Graph, gc_paused


class Pass:
    name: str = ""
    summary: str = ""
    options: dict[str, Any] = {}

    def __init__(self, **opts: Any):
        unknown = sorted(set(opts) - set(self.options))
        if unknown:
            raise EdgecError(f"pass '{self.name}' has no option {', '.join(unknown)}; "
                             f"its options: {', '.join(self.options) or 'none'}")
        self.opts = {**self.options, **opts}
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
        raise EdgecError(f"unknown pass '{name}'; known passes: {', '.join(sorted(PASSES))}")
    return PASSES[name]


def _convert_option(cls: type[Pass], key: str, text: str) -> Any:
    if key not in cls.options:
        raise EdgecError(f"pass '{cls.name}' has no option '{key}'; its options: "
                         f"{', '.join(cls.options) or 'none'}")
    default = cls.options[key]
    try:
        if isinstance(default, bool):
            if text not in ("true", "false"):
                raise ValueError
            return text == "true"
        return type(default)(text)
    except ValueError:
        raise EdgecError(f"option {cls.name}{{{key}={text}}}: expected a {type(default).__name__}") from None


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
    """What the pass manager does around each pass (the CLI's instrument flags)."""
    verify: bool = True
    print_before: set[str] = field(default_factory=set)
    print_after: set[str] = field(default_factory=set)
    print_after_all: bool = False
    print_after_change: bool = False
    dump_dir: Path | None = None
    reproducer_dir: Path | None = None
    out: Callable[[str], None] = print


class PassManager:
    def __init__(self, pipeline: str, instruments: Instruments | None = None):
        self.items = parse_pipeline(pipeline)
        self.instruments = instruments or Instruments()
        self.records: list[PassRecord] = []

    @gc_paused()
    def run(self, graph: Graph) -> Graph:
        """Run the pipeline in place on `graph` and return it. A pass that returns False must
        leave what the printed IR shows unchanged: the manager compares `text.fingerprint`
        before and after it (linear in the graph, far cheaper than printing)."""
        from .verifier import verify
        from .text import fingerprint, print_ir
        ins = self.instruments
        if ins.dump_dir is not None:
            ins.dump_dir.mkdir(parents=True, exist_ok=True)
            (ins.dump_dir / "00-input.eir").write_text(print_ir(graph))
        for step, (name, opts) in enumerate(self.items, start=1):
            p = get_pass(name)(**opts)
            label = format_pipeline([(name, opts)])
            payloads: list | None = [] if ins.reproducer_dir is not None else None
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
                (ins.dump_dir / f"{step:02d}-{name}.eir").write_text(after)
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
            path = Path(self.instruments.reproducer_dir) / f"edgec-reproducer-{step:02d}-{label.split('{')[0]}.eir"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"// edgec reproducer: run with `edgec opt {path.name} --passes '{label}'`\n"
                            f"// pipeline: {label}\n" + text)
            message += f"\n  reproducer (input IR and pipeline): {path}"
        return PassError(message)

    def timing_table(self) -> str:
        rows = ["| pass | wall ms | changed | nodes | statistics |", "|---|---:|---|---|---|"]
        for r in self.records:
            stats = ", ".join(f"{k}={v}" for k, v in sorted(r.stats.items()))
            rows.append(f"| {r.name} | {r.seconds * 1000:.2f} | {'yes' if r.changed else 'no'} | "
                        f"{r.nodes_before} -> {r.nodes_after} | {stats} |")
        return "\n".join(rows)


def optimize(graph: Graph, target: str = "host", level: int | None = 2, passes: str | None = None,
             instruments: Instruments | None = None) -> Graph:
    """Run the target's pipeline for `level` (or the explicit `passes`) on a copy of `graph`."""
    if passes is None:
        from edgec.targets import get_target
        passes = get_target(target).pipeline(level if level is not None else 2)
    return PassManager(passes, instruments).run(graph.copy())
