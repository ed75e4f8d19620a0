"""Pass manager: pipelines round-trip, instruments, failures name the pass and leave a reproducer."""

import numpy as np
import pytest

import edgec
from edgec.errors import EdgecError, PassError, VerifyError
from edgec.ir import Graph, TensorType
from edgec.passmanager import (PASSES, Instruments, Pass, PassManager, format_pipeline, get_pass, parse_pipeline,
                               register_pass)


def graph_with_foldable_chain():
    g = Graph()
    x = g.add_input("x", TensorType("f32", (3,)))
    c = g.add("neg", [g.const(np.array([1, 2, 3], np.float32))], origin=["Neg_c"]).output
    dead = g.add("relu", [x], origin=["Dead"]).output  # noqa: F841
    y = g.add("add", [x, c], origin=["Add_y"]).output
    g.set_outputs([y], ["y"])
    return g


def test_pipeline_strings_round_trip():
    items = parse_pipeline(" fold-constants{max-size=16}, dce ,fold-constants")
    assert items == [("fold-constants", {"max-size": 16}), ("dce", {}), ("fold-constants", {})]
    assert format_pipeline(items) == "fold-constants{max-size=16},dce,fold-constants"
    assert parse_pipeline(format_pipeline(items)) == items


@pytest.mark.parametrize("text,message", [
    ("no-such-pass", "unknown pass 'no-such-pass'"),
    ("dce{x=1}", "no option 'x'"),
    ("fold-constants{max-size=big}", "expected a int"),
    ("dce,,", "cannot parse pipeline"),
    ("fold-constants{max-size}", "key=value"),
    ("convert-layout{to=XYZ}", r"convert-layout\{to=XYZ\}: the value must be one of NHWC, NCHW"),
    ("convert-layout{to=nhwc}", "must be one of NHWC, NCHW"),
    ("fold-constants{max-size=-5}", r"fold-constants\{max-size=-5\}: the value must be at least 0"),
    ("fold-constant", "unknown pass 'fold-constant' \\(did you mean 'fold-constants'\\?\\)"),
    ("fold-constants{max-sise=5}", "no option 'max-sise' \\(did you mean 'max-size'\\?\\)"),
])
def test_bad_pipelines_are_clear_errors(text, message):
    with pytest.raises(EdgecError, match=message):
        parse_pipeline(text)


def test_fold_and_dce_with_timing_statistics():
    g = graph_with_foldable_chain()
    pm = PassManager("fold-constants,dce")
    pm.run(g)
    assert [n.op for n in g.nodes] == ["add"]
    folded, dce = pm.records
    assert folded.changed and folded.stats == {"folded": 1} and folded.nodes_before == 3
    assert dce.changed and dce.stats == {"removed": 1} and dce.nodes_after == 1
    table = pm.timing_table()
    assert "| fold-constants |" in table and "3 -> 2" in table and "folded=1" in table


def test_fold_constants_respects_max_size():
    g = graph_with_foldable_chain()
    pm = PassManager("fold-constants{max-size=2}")
    pm.run(g)
    assert pm.records[0].stats == {"skipped-large": 1} and not pm.records[0].changed


def test_print_after_change_and_dump_dir(tmp_path):
    printed = []
    ins = Instruments(print_after_change=True, print_before={"dce"}, dump_dir=tmp_path / "dump",
                      out=printed.append)
    PassManager("dce,dce", ins).run(graph_with_foldable_chain())
    assert printed[0].startswith("// -----// IR before dce")
    assert sum("IR after dce" in p for p in printed) == 1  # the second dce changes nothing
    assert sorted(p.name for p in (tmp_path / "dump").iterdir()) == ["00-input.eir", "01-dce.eir", "02-dce.eir"]
    assert (tmp_path / "dump" / "01-dce.eir").read_text() == (tmp_path / "dump" / "02-dce.eir").read_text()


class _Broken(Pass):
    name = "test-broken"
    summary = "breaks the graph: gives a node a wrong result type"

    def run(self, graph):
        graph.nodes[-1].outputs[0].type = TensorType("f32", (7,))
        return True


class _Liar(Pass):
    name = "test-liar"
    summary = "changes the graph but says it did not"

    def run(self, graph):
        graph.nodes[-1].origin = ("moved",)
        return False


@pytest.fixture
def test_passes():
    register_pass(_Broken)
    register_pass(_Liar)
    yield
    PASSES.pop("test-broken")
    PASSES.pop("test-liar")


def test_failing_pass_is_named_with_its_predecessors_and_a_reproducer(tmp_path, test_passes):
    g = graph_with_foldable_chain()
    pm = PassManager("dce,test-broken", Instruments(reproducer=tmp_path))
    with pytest.raises(PassError) as info:
        pm.run(g)
    message = str(info.value)
    assert "pass 'test-broken' (step 2) failed" in message and "Add_y" in message
    assert "passes before it: dce" in message
    repro = next(tmp_path.iterdir())
    text = repro.read_text()
    assert "pipeline: test-broken" in text
    # the reproducer is the input IR of the failing pass, with full constants: it parses and runs
    body = "\n".join(line for line in text.splitlines() if not line.startswith("//"))
    parsed = edgec.parse_ir(body)
    assert [n.op for n in parsed.nodes] == ["neg", "add"]
    edgec.interpret(parsed, {"x": np.zeros(3, np.float32)})


def test_pass_that_hides_a_change_is_caught(test_passes):
    with pytest.raises(PassError, match="changed the graph but returned False"):
        PassManager("test-liar").run(graph_with_foldable_chain())


def test_optimize_works_on_a_copy():
    g = graph_with_foldable_chain()
    before = str(g)
    out = edgec.optimize(g, passes="fold-constants,dce")
    assert str(g) == before and len(out.nodes) == 1


def test_every_builtin_option_default_is_one_it_takes():
    """The declared values of each built-in pass's options include the default, and parse back."""
    from edgec.passmanager import _load_builtin_passes, option_spec
    _load_builtin_passes()
    with_options = [cls for cls in PASSES.values() if cls.options]
    assert {cls.name for cls in with_options} >= {"convert-layout", "fold-constants"}
    for cls in with_options:
        for key in cls.options:
            default = option_spec(cls, key).default
            text = format_pipeline([(cls.name, {key: default})])
            assert parse_pipeline(text) == [(cls.name, {key: default})]


@pytest.mark.parametrize("opts,message", [
    ({"max-size": -1}, "at least 0"),
    ({"max-size": "big"}, "expected a int"),
    ({"max-size": True}, "expected a int"),
    ({"limit": 3}, "no option 'limit'"),
])
def test_options_given_from_python_are_checked_too(opts, message):
    with pytest.raises(EdgecError, match=message):
        get_pass("fold-constants")(**opts)


def test_the_reproducer_directory_is_made_only_when_a_pass_fails(tmp_path, monkeypatch, test_passes):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    PassManager("fold-constants,dce", Instruments(reproducer=True)).run(graph_with_foldable_chain())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(PassError, match="reproducer .*: " + str(tmp_path)):
        PassManager("dce,test-broken", Instruments(reproducer=True)).run(graph_with_foldable_chain())
    (made,) = tmp_path.iterdir()
    assert made.name.startswith("edgec-reproducer-")
    assert [f.name for f in made.iterdir()] == ["edgec-reproducer-02-test-broken.eir"]


@pytest.mark.parametrize("field,flag", [("dump_dir", "--dump-ir"), ("reproducer", "--reproducer-dir")])
def test_instrument_directories_that_are_files_are_refused(tmp_path, field, flag):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(EdgecError, match=f"{flag} {tmp_path / 'f'} is a file, not a directory"):
        PassManager("dce", Instruments(**{field: tmp_path / "f"}))
    assert (tmp_path / "f").read_text() == "mine"


def test_a_reproducer_that_cannot_be_written_does_not_hide_the_failure(tmp_path, test_passes):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(PassError, match=r"(?s)'test-broken' \(step 1\) failed.*no reproducer: --reproducer-dir "
                                        r".*: cannot write it \(.*f is a file, not a directory\)"):
        PassManager("test-broken", Instruments(reproducer=tmp_path / "f" / "sub")).run(graph_with_foldable_chain())


def test_ir_dumps_are_whole_files_only(tmp_path):
    """Each dump is written beside its name and renamed into place: no temporary file stays."""
    PassManager("fold-constants,dce", Instruments(dump_dir=tmp_path / "d")).run(graph_with_foldable_chain())
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["00-input.eir", "01-fold-constants.eir", "02-dce.eir"]


class _HiddenAttrChange(Pass):
    name = "test-hidden-attr"
    summary = "changes an attribute list in place but says it did not"

    def run(self, graph):
        graph.nodes[0].attrs["perm"].reverse()
        return False


class _HiddenConstChange(Pass):
    name = "test-hidden-const"
    summary = "gives a node another constant but says it did not"

    def run(self, graph):
        node = graph.nodes[-1]
        node.set_input(1, graph.const(node.inputs[1].const_value() + 1))
        return False


@pytest.mark.parametrize("liar", [_HiddenAttrChange, _HiddenConstChange])
def test_hidden_changes_of_attributes_and_constants_are_caught(liar):
    g = Graph()
    x = g.add_input("x", TensorType("f32", (3, 3)))
    t = g.add("transpose", [x], {"perm": [1, 0]}).output
    y = g.add("add", [t, g.const(np.ones((3, 3), np.float32))]).output
    g.set_outputs([y], ["y"])
    register_pass(liar)
    try:
        with pytest.raises(PassError, match="changed the graph but returned False"):
            PassManager(liar.name).run(g)
    finally:
        PASSES.pop(liar.name)


def test_the_pipeline_is_resolved_in_one_place():
    """`resolve_pipeline`: explicit passes win, the level picks the target's pipeline (default
    -O2), a level that does not exist is an error; `optimize` runs what it resolves."""
    from edgec.passmanager import resolve_pipeline
    from edgec.targets import get_target
    assert resolve_pipeline("host", 1, "dce") == "dce"
    assert resolve_pipeline("host") == resolve_pipeline("host", 2) == get_target("host", detect=False).pipeline(2)
    assert resolve_pipeline("arm-a72", 0) == get_target("arm-a72").pipeline(0)
    with pytest.raises(EdgecError, match="-O7"):
        resolve_pipeline("host", 7)


def test_instruments_are_before_and_after_pass_hooks(test_passes):
    """A user's instrument sees every pass, in order, with the manager's record of each run; an
    exception from a checking instrument (`checks = True`) is the pass's failure."""
    from edgec.passmanager import Instrument

    class Log(Instrument):
        def __init__(self):
            self.calls = []

        def enter(self, graph):
            self.calls.append(("enter", len(graph.nodes)))

        def before_pass(self, step, label, graph):
            self.calls.append(("before", step, label))

        def after_pass(self, step, label, graph, record):
            self.calls.append(("after", step, record.name, record.changed))

    log = Log()
    PassManager("fold-constants{max-size=2},dce", [log]).run(graph_with_foldable_chain())
    assert log.calls[0][0] == "enter"
    assert log.calls[1:] == [("before", 1, "fold-constants{max-size=2}"), ("after", 1, "fold-constants", False),
                             ("before", 2, "dce"), ("after", 2, "dce", log.calls[4][3])]

    class NoAdds(Instrument):
        checks = True

        def after_pass(self, step, label, graph, record):
            if any(n.op == "add" for n in graph.nodes):
                raise VerifyError("an add is left")

    with pytest.raises(PassError, match=r"pass 'dce' \(step 1\) failed: an add is left"):
        PassManager("dce", [NoAdds()]).run(graph_with_foldable_chain())


def test_no_ir_is_printed_unless_an_instrument_asks(monkeypatch):
    """The default instruments (verify) and a reproducer print nothing while the passes succeed."""
    import edgec.text

    def refuse(*a, **k):
        raise AssertionError("the IR was printed")
    monkeypatch.setattr(edgec.text, "print_ir", refuse)
    PassManager("fold-constants,cse,dce", Instruments(reproducer=True)).run(graph_with_foldable_chain())


def test_dump_files_are_read_back_in_step_order(tmp_path):
    """`dump_files` (what diff, view and the Model Explorer adapter read a --dump-ir folder with)
    orders by step number, so a pipeline past 99 passes keeps its order; other files are not
    steps."""
    from edgec.passmanager import dump_files
    for name in ("00-input.eir", "09-dce.eir", "100-cse.eir", "99-dce.eir", "notes.eir", "10-x.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in dump_files(tmp_path)] == ["00-input.eir", "09-dce.eir", "99-dce.eir", "100-cse.eir"]
