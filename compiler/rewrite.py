"""The pattern rewriter: rules as pattern, check and rewrite; a driver that runs them to a fixed point.

A rule has
- a `pattern`, built from `Op`, `Var`, `Const`, `Any` and `Either` (below), matched structurally
  against a node and the producers of its inputs; matching never mutates anything;
- a `check(match) -> str | None` that returns the reason it refuses (or None to accept);
- a `rewrite(graph, match) -> list[Value]`, called only after the pattern matched and every check
  accepted; it creates the replacement and returns the values that replace the root node's outputs.

The driver (`apply_rules`) replaces the root's outputs, removes matched nodes left unused, and runs
the rules over the graph until a sweep changes nothing (a loop guard stops a rule set that never
settles). It refuses, with a reason, a match whose intermediate results are also used outside the
match (the rewrite would have to keep them anyway), unless the rule allows it.

    rule = Rule("silu",  # x*sigmoid(x) -> silu(x)
                Op("mul", Var("x"), Op("sigmoid", Var("x")), commutative=True),
                rewrite=lambda g, m: [g.add("silu", [m["x"]], origin=m.origin()).output])

Every rewrite keeps `origin`: `match.origin()` is the union of the matched nodes' origins, in
graph order, for the new node(s). A rewrite that makes other nodes dead may append them to
`match.nodes`; the driver removes them once unused.

`RewritePass` turns a list of rules into a pass: statistics go to `Pass.count` (one per rewrite,
named by the rule, and `refused-<rule>` per refusal) and `pass.refusals` keeps each refusal with
its node and reason, for tests and reports. `splat`, `is_splat` and `describe_const` help checks
read constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import PassError
from .ir import Graph, Node, Value
from .passmanager import Pass


class Match:
    """What a pattern bound: named values (`m["x"]`), named nodes (`m.node("conv")`), all nodes."""

    def __init__(self, root: Node):
        self.root = root
        self.values: dict[str, Value] = {}
        self.named_nodes: dict[str, Node] = {}
        self.nodes: list[Node] = []

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def node(self, name: str) -> Node:
        return self.named_nodes[name]

    def origin(self) -> tuple[str, ...]:
        """Union of the matched nodes' origins, in graph order."""
        return merged_origin(*sorted(self.nodes, key=Graph.order_key))

    def _snapshot(self) -> tuple:
        return dict(self.values), dict(self.named_nodes), list(self.nodes)

    def _restore(self, snap: tuple) -> None:
        self.values, self.named_nodes, self.nodes = dict(snap[0]), dict(snap[1]), list(snap[2])


class Pattern:
    def match(self, value: Value, m: Match) -> bool:
        raise NotImplementedError


class Any(Pattern):
    """Matches any value."""

    def match(self, value: Value, m: Match) -> bool:
        return True


@dataclass
class Var(Pattern):
    """Binds any value to `name`; a second occurrence of the same name must be the same value."""
    name: str

    def match(self, value: Value, m: Match) -> bool:
        if self.name in m.values:
            return m.values[self.name] is value
        m.values[self.name] = value
        return True


@dataclass
class Const(Pattern):
    """Binds a constant (with a payload that can be read) to `name`."""
    name: str

    def match(self, value: Value, m: Match) -> bool:
        if value.const is None:
            return False
        return Var(self.name).match(value, m)


class Op(Pattern):
    """Matches a value produced by a node of op `op` (or one of the ops in a tuple), whose inputs
    match `inputs` (all of them when given; `inputs=None` matches any inputs). `commutative` also
    tries the two inputs of a binary op swapped. `name` binds the node; `attrs` must be equal;
    `where(node)`, a structural predicate, must hold (a node it rejects is not a match, not a
    refusal)."""

    def __init__(self, op: str | tuple[str, ...], *inputs: Pattern, name: str | None = None,
                 commutative: bool = False, attrs: dict[str, object] | None = None,
                 any_inputs: bool = False, where: Callable[[Node], bool] | None = None):
        self.ops = (op,) if isinstance(op, str) else tuple(op)
        self.inputs = None if any_inputs else list(inputs)
        self.name = name
        self.commutative = commutative
        self.attrs = attrs or {}
        self.where = where

    def match(self, value: Value, m: Match) -> bool:
        node = value.producer()
        if node is None or len(node.outputs) != 1:
            return False
        return self.match_node(node, m)

    def match_node(self, node: Node, m: Match) -> bool:
        if node.op not in self.ops:
            return False
        if any(node.attrs.get(k) != v for k, v in self.attrs.items()):
            return False
        if self.where is not None and not self.where(node):
            return False
        if self.name is not None:
            if self.name in m.named_nodes and m.named_nodes[self.name] is not node:
                return False
            m.named_nodes[self.name] = node
        if node not in m.nodes:
            m.nodes.append(node)
        if self.inputs is None:
            return True
        if len(node.inputs) != len(self.inputs):
            return False
        orders = [list(node.inputs)]
        if self.commutative and len(node.inputs) == 2:
            orders.append(list(reversed(node.inputs)))
        snap = m._snapshot()
        for values in orders:
            if all(p.match(v, m) for p, v in zip(self.inputs, values)):
                return True
            m._restore(snap)
        return False


class Either(Pattern):
    """Matches the first of `alternatives` that matches (bindings of the others are undone)."""

    def __init__(self, *alternatives: Pattern):
        self.alternatives = alternatives

    def match(self, value: Value, m: Match) -> bool:
        snap = m._snapshot()
        for p in self.alternatives:
            if p.match(value, m):
                return True
            m._restore(snap)
        return False


@dataclass
class Rule:
    """One rewrite: `pattern` (an `Op` matched at each node), `check`, `rewrite`.

    `allow_shared` lets intermediate results of the match be used elsewhere (the rewrite then
    leaves those nodes in place for their other users)."""
    name: str
    pattern: Op
    rewrite: Callable[[Graph, Match], list[Value]]
    check: Callable[[Match], str | None] = lambda m: None
    allow_shared: bool = False

    def match(self, node: Node) -> Match | None:
        m = Match(node)
        return m if self.pattern.match_node(node, m) else None


def shared_intermediate(m: Match, graph: Graph) -> str | None:
    """The reason a match cannot be rewritten because an intermediate result is used elsewhere."""
    inside = {id(n) for n in m.nodes}
    outputs = {id(v) for v in graph.outputs}
    for n in m.nodes:
        if n is m.root:
            continue
        for o in n.outputs:
            if id(o) in outputs:
                return f"the result of '{n.op}' inside the pattern is a graph output"
            for user, _ in o.uses():
                if id(user) not in inside:
                    return f"the result of '{n.op}' inside the pattern is also used by '{user.op}'"
    return None


@dataclass
class Refusal:
    rule: str
    node: Node
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.node.describe()}: {self.reason}"


@dataclass
class RewriteResult:
    changed: bool = False
    applied: dict[str, int] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)


def apply_rules(graph: Graph, rules: list[Rule], max_sweeps: int = 50,
                count: Callable[[str, int], None] | None = None) -> RewriteResult:
    """Run `rules` over `graph` (nodes in order, first rule that applies wins) until a sweep
    changes nothing. `count(stat, n)` (usually `Pass.count`) gets one count per rewrite, named
    by the rule, and `refused-<rule>` per refusal. Raises PassError after `max_sweeps` sweeps."""
    result = RewriteResult()
    seen_refusals: set[tuple[str, int, str]] = set()
    by_op: dict[str, list[Rule]] = {}  # the rules whose root can match each op, in rule order
    for rule in rules:
        for op in dict.fromkeys(rule.pattern.ops):
            by_op.setdefault(op, []).append(rule)
    for _ in range(max_sweeps):
        changed = False
        for node in graph.nodes:
            if node.graph is not graph:
                continue  # removed by an earlier rewrite in this sweep
            for rule in by_op.get(node.op, ()):
                m = rule.match(node)
                if m is None:
                    continue
                reason = None if rule.allow_shared else shared_intermediate(m, graph)
                if reason is None:
                    reason = rule.check(m)
                if reason is not None:
                    key = (rule.name, id(node), reason)
                    if key not in seen_refusals:
                        seen_refusals.add(key)
                        result.refusals.append(Refusal(rule.name, node, reason))
                        if count:
                            count(f"refused-{rule.name}", 1)
                    continue
                _apply(graph, rule, m)
                result.applied[rule.name] = result.applied.get(rule.name, 0) + 1
                if count:
                    count(rule.name, 1)
                changed = True
                break
        if not changed:
            # Refusals of nodes that a later rewrite removed are not interesting.
            result.refusals = [r for r in result.refusals if r.node.graph is graph]
            return result
        result.changed = True
    raise PassError(f"rewrite rules {', '.join(r.name for r in rules)} did not reach a fixed point "
                    f"in {max_sweeps} sweeps (a rule probably undoes another)")


def _apply(graph: Graph, rule: Rule, m: Match) -> None:
    root = m.root
    with graph.inserting_before(root):
        new = rule.rewrite(graph, m)
    if len(new) != len(root.outputs):
        raise PassError(f"rule '{rule.name}' returned {len(new)} values for {len(root.outputs)} results")
    for old, value in zip(root.outputs, new):
        if value is not old:
            graph.replace_all_uses_with(old, value)
    remove_dead(graph, m.nodes)


def remove_dead(graph: Graph, nodes: list[Node]) -> None:
    """Remove those of `nodes` (and, transitively, those of them feeding only removed ones) that
    are unused."""
    outputs = {id(v) for v in graph.outputs}
    pending = [n for n in nodes if n.graph is graph]
    progress = True
    while progress:
        progress = False
        for n in list(pending):
            if not any(o.uses() or id(o) in outputs for o in n.outputs):
                graph.remove(n)
                pending.remove(n)
                progress = True


def merged_origin(*nodes: Node) -> tuple[str, ...]:
    """The union of the nodes' origins, each once, in the order given."""
    return tuple(dict.fromkeys(o for n in nodes for o in n.origin))


class RewritePass(Pass):
    """A pass made of rewrite rules: subclasses define `rules()` (they may read `self.opts`).
    After `run`, `self.refusals` lists what the checks refused, with their reasons."""

    def rules(self) -> list[Rule]:
        raise NotImplementedError

    def run(self, graph: Graph) -> bool:
        result = apply_rules(graph, self.rules(), count=self.count)
        self.refusals = result.refusals
        return result.changed


# ---- helpers for checks ------------------------------------------------------------------------

def splat(value: Value) -> float | None:
    """The single value of a constant whose elements are all equal (a scalar or a filled
    tensor); None for anything else (not constant, empty, a placeholder, differing elements)."""
    if value.const is None or value.type.size == 0:
        return None
    flat = value.const.reshape(-1)
    first = flat[0]
    if not (flat == first).all():
        return None
    return float(first) if value.type.dtype != "bool" else float(bool(first))


def is_splat(value: Value, expected: float, rel: float | None = None) -> bool:
    """Whether `value` is a constant filled with `expected`. Without `rel`: exactly, when
    `expected` is a float32 number (0, 1, 0.5, 3, 6 ...), else within 1e-4 relative (sqrt(2),
    1/6, 0.044715 are stored rounded); with `rel`, within that relative tolerance."""
    s = splat(value)
    if s is None:
        return False
    if rel is None:
        if float(np.float32(expected)) == expected:
            return s == expected
        rel = 1e-4
    return abs(s - expected) <= rel * max(abs(expected), 1e-30)


def describe_const(value: Value) -> str:
    s = splat(value)
    if s is not None:
        return f"the constant {s:g}"
    return "a non-constant value" if value.const is None else f"a constant {value.type} with differing elements"
