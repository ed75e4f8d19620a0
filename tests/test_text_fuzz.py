"""The text format on bad input: every malformed text raises an EdgecError naming the line (a
corpus of the cases an audit found, then bounded fuzzing of valid texts), and any name prints
as valid UTF-8 and parses back to itself."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgec
from edgec.driver import load_model
from edgec.errors import EdgecError
from edgec.ir import MAX_ELEMENTS, Graph, TensorType
from edgec.verifier import verify

from edgec.testing import graphs


def conv_graph(name="modèle", input_name="输入"):
    """conv (a constant of 54 elements: by hash, or b64 with full constants), relu, max_pool."""
    rng = np.random.default_rng(0)
    g = Graph(name)
    x = g.add_input(input_name, TensorType("f32", (1, 2, 5, 5)))
    w = g.const(rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    b = g.const(np.array([0.5, -1, 2], np.float32))
    c = g.add("conv", [x, w, b], {"pads": [1, 1, 1, 1], "strides": [1, 1], "dilations": [1, 1], "group": 1},
              origin=["Conv_0"]).output
    r = g.add("relu", [c], origin=["Relu_1"]).output
    g.set_outputs([g.add("max_pool", [r], {"kernel_shape": [2, 2], "strides": [2, 2]}).output], ["y"])
    return g


WEIRD_NAMES = ['quote"d', "back\\slash", "nul\x00", "lone\udc80", "c0", "0", "输入", "modèle", "a b", ""]


def names_graph(graph_name='we"ird\\\x00\udc80'):
    """Quoted names everywhere (inputs, outputs, origins, graph), a node with two results."""
    g = Graph(graph_name)
    xs = [g.add_input(n, TensorType("f32", (2, 4))) for n in WEIRD_NAMES[:6]]
    a = g.add("add", [xs[0], xs[1]], origin=['n"0\\']).output
    m = g.add("mul", [a, xs[2]], origin=["\x00", "\udcff", "输入"]).output
    s = g.add("split", [m], {"axis": 1, "sizes": [1, 3]}).outputs
    t = g.add("concat", [s[1], s[0], xs[3]], {"axis": 1}).output
    u = g.add("transpose", [t], {"perm": [1, 0]}).output
    g.set_outputs([u, g.add("sub", [xs[4], xs[5]]).output, s[0]], ['out"1', "出力", "nul\x00"])
    return g


def dtypes_graph():
    """Inline constants of bool, f16 (with -inf) and i64; float, int, str and list attributes."""
    g = Graph("dtypes")
    i = g.add_input("idx", TensorType("i64", (3,)))
    f = g.add_input("f", TensorType("f32", (4, 2)))
    h = g.add("hard_sigmoid", [g.add("gather", [f, i], {"axis": 0}).output], {"alpha": 0.25, "beta": 1e-05}).output
    half = g.add("cast", [h], {"to": "f16"}).output
    w = g.add("where", [g.const(np.array([True, False])), half, g.const(np.array([1.5, -np.inf], np.float16))]).output
    r = g.add("reshape", [w], {"shape": [2, 3]}).output
    s = g.add("slice", [i], {"starts": [0], "ends": [2], "axes": [0], "steps": [1]}).output
    g.set_outputs([r, g.add("add", [s, g.const(np.array([1, -1], np.int64))]).output], ["half", "ints"])
    return g


BASE_TEXTS = [edgec.print_ir(conv_graph(), full_constants=True), str(conv_graph()),
              str(names_graph()), str(dtypes_graph())]

H = "graph @g(%x: f32[2]) -> (%y: f32[2]) {\n"


def node(line):
    return H + line + "\n  %0 = add(%x, %c0) : f32[2]\n  return %0\n}\n"


def header_type(ty):
    return f"graph @g(%x: {ty}) -> (%y: f32[2]) {{\n  return %x\n}}\n"


# (malformed text, a fragment of the message): each once escaped as an internal error or was
# silently accepted with another meaning.
CORPUS = [
    # bad string escapes, in each place a string appears
    (H + '  %0 = relu(%x) : f32[2]  @"Relu\\q"\n  return %0\n}\n', "line 2: bad string"),
    ('graph @"m\\z"(%x: f32[2]) -> (%y: f32[2]) {\n  return %x\n}\n', "line 1: bad string"),
    ('graph @g(%"x\\u12": f32[2]) -> (%y: f32[2]) {\n  return %x\n}\n', "line 1: bad string"),
    (H + '  %0 = cast(%x) {to="f\\316"} : f32[2]\n  return %0\n}\n', "line 2: bad string"),
    (H + '  %0 = relu(%x) : f32[2]  @"a\tb"\n  return %0\n}\n', "line 2: bad string"),
    # b64 payloads that are not base64 or not the constant's size
    (node('  %c0 = const f32[2] #00 b64"AAAAAAAAAA=A"'), "not valid base64"),
    (node('  %c0 = const f32[2] #00 b64"AAAA"'), "has 4 characters; f32[2] is 8 bytes"),
    (node('  %c0 = const f32[2] #00 b64"AAAAAAAAAAAAAAAA"'), "has 16 characters"),
    (node('  %c0 = const f32[2] #00 b64"AAAAAAAAAA=="'), "decodes to 7 bytes"),
    (node('  %c0 = const bool[2] #00 b64"AAI="'), "other than 0 and 1"),
    (node('  %c0 = const f64[1000] #00 b64"AAAA"'), "f64[1000] is 8000 bytes"),
    # inline lists that do not fill the type
    (node("  %c0 = const f32[2] [1]"), "f32[2] has 2 elements, the list gives 1"),
    (node("  %c0 = const f32[2] [1,2,3]"), "the list gives 3"),
    (node("  %c0 = const f32[] [1,2]"), "f32[] has 1 elements"),
    (node("  %c0 = const f32[2] [[1],[2]]"), "expected a number, found ["),
    (node('  %c0 = const f32[2] ["a","b"]'), "expected a number"),
    # dimensions that are not non-negative integers, tensors over the size limit
    (header_type("f32[1.5]"), "dimension must be an integer, found 1.5"),
    (header_type("f32[1e0]"), "found 1e0"),
    (header_type("f32[nan]"), "found nan"),
    (header_type("f32[inf4]"), "expected a number, found inf4"),
    (header_type("f32[-1]"), "dimension -1 is out of range"),
    (header_type("f32[" + "9" * 5000 + "]"), "out of range"),
    (header_type("f32[65536,65536]"), f"f32[65536,65536] has more than {MAX_ELEMENTS} elements"),
    (header_type("f32[2147483649,0]"), "dimension 2147483649 is out of range"),
    (node("  %c0 = const f32[" + ",".join(["1"] * 65) + "] [1]"), "a f32 type has 65 dims, more than 64"),
    # integer constants out of their dtype's range, float constants that overflow
    (node("  %c0 = const i8[2] [300,1]"), "i8 value 300 is out of range [-128, 127]"),
    (node("  %c0 = const u8[2] [-1,1]"), "u8 value -1 is out of range"),
    (node("  %c0 = const i64[2] [9223372036854775808,1]"), "out of range"),
    (node("  %c0 = const i64[2] [" + "9" * 5000 + ",1]"), "out of range"),
    (node("  %c0 = const i32[2] [1.5,1]"), "i32 value must be an integer, found 1.5"),
    (node("  %c0 = const bool[2] [2,1]"), "bool value 2 is out of range [0, 1]"),
    (node("  %c0 = const f16[2] [1e10,1]"), "1e10 is out of the range of f16"),
    (node("  %c0 = const f64[2] [1e999,1]"), "1e999 is out of the range of f64"),
    (H + "  %0 = relu(%x) {k=" + "9" * 5000 + "} : f32[2]\n  return %0\n}\n", "integer attribute"),
    # nested attribute lists (deep nesting blew the stack)
    (H + "  %0 = relu(%x) {k=" + "[" * 100000 + "} : f32[2]\n  return %0\n}\n", "do not nest"),
    (H + "  %0 = transpose(%x) {perm=[[0]]} : f32[2]\n  return %0\n}\n", "do not nest"),
    # values defined twice, attributes given twice
    (H + "  %0 = relu(%x) : f32[2]\n  %0 = neg(%x) : f32[2]\n  return %0\n}\n",
     "line 3: %0 is defined twice (first on line 2)"),
    (H + "  %x = relu(%x) : f32[2]\n  return %x\n}\n", "line 2: %x is defined twice (first on line 1)"),
    ('graph @g(%x: f32[2], %"x": f32[2]) -> (%y: f32[2]) {\n  return %x\n}\n', "duplicate names"),
    ("graph @g(%x: f32[2], %x: f32[2]) -> (%y: f32[2]) {\n  return %x\n}\n", "line 1: %x is defined twice"),
    ('graph @g(%"\\u00e8": f32[2], %"è": f32[2]) -> (%y: f32[2]) {\n  return %x\n}\n', "defined twice"),
    (node("  %c0 = const f32[2] [1,2]\n  %c0 = const f32[2] [3,4]"), "line 3: %c0 is defined twice"),
    (H + "  %0, %0 = split(%x) {axis=0, sizes=[1,1]} : (f32[1], f32[1])\n  return %x\n}\n", "defined twice"),
    (node("  %c0, %c1 = const f32[2] [1,2]"), "a const line defines one value, not 2"),
    (H + "  %0 = hard_sigmoid(%x) {alpha=0.5, alpha=0.25} : f32[2]\n  return %0\n}\n",
     "line 2: attribute alpha is given twice"),
    # a missing or second return, text after it
    (H + "  %0 = relu(%x) : f32[2]\n}\n", "line 3: the graph ends without a return line"),
    (H + "  return %x\n  return %x\n}\n", "line 3: only the closing '}' may follow the return line (line 2)"),
    (H + "  return %x\n  %0 = relu(%x) : f32[2]\n}\n", "line 3: only the closing"),
    (H + "  return %x\n} }\n", "line 3: unexpected '}'"),
    # an unknown op names its line
    (H + "  %0 = frobnicate(%x) : f32[2]\n  return %0\n}\n", "line 2: unknown op 'frobnicate'"),
]


@pytest.mark.parametrize("text,message", CORPUS, ids=[message[:50] for _, message in CORPUS])
def test_malformed_text_is_a_clean_error_naming_the_problem(text, message):
    with pytest.raises(EdgecError) as err:
        edgec.parse_ir(text)
    assert message in str(err.value)


def test_constants_over_the_total_limit_are_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(edgec.text, "MAX_CONSTANT_BYTES", 48)  # three f32[4] constants
    consts = "\n".join(f"  %c{i} = const f32[4] [1,2,3,4]" for i in range(4))
    adds = "  %0 = add(%c0, %c1) : f32[4]\n  %1 = add(%c2, %c3) : f32[4]\n  %2 = add(%0, %1) : f32[4]"
    text = f"graph @g() -> (%y: f32[4]) {{\n{consts}\n{adds}\n  return %2\n}}\n"
    with pytest.raises(EdgecError, match="line 5: the constants hold more than 48 bytes in all"):
        edgec.parse_ir(text)
    # placeholders (shown by hash only) hold no payload and do not count
    assert len(edgec.parse_ir(text.replace("[1,2,3,4]", "#00")).constants()) == 4


def test_eir_file_that_is_not_utf8_or_malformed_names_the_file(tmp_path):
    bad = tmp_path / "bad.eir"
    bad.write_bytes(str(conv_graph()).encode().replace(b"relu", b"rel\xff"))
    with pytest.raises(EdgecError, match=r"bad.eir: not edgec IR text: byte \d+ is not UTF-8"):
        load_model(str(bad), {})
    bad.write_text(H + "  %0 = relu(%x) : f32[2]\n}\n")
    with pytest.raises(EdgecError, match="bad.eir: IR text line 3: the graph ends without a return line"):
        load_model(str(bad), {})


@pytest.mark.parametrize("name", WEIRD_NAMES)
def test_any_name_prints_as_utf8_and_round_trips(name):
    for g in (conv_graph(name=name, input_name=name), names_graph(graph_name=name)):
        text = edgec.print_ir(g, full_constants=True)
        text.encode("utf-8")  # no lone surrogate in the text itself
        parsed = edgec.parse_ir(text)
        assert edgec.print_ir(parsed, full_constants=True) == text
        assert parsed.name == name
        assert [v.name for v in parsed.inputs] == [v.name for v in g.inputs]
        assert parsed.output_names == g.output_names
        assert [n.origin for n in parsed.nodes] == [n.origin for n in g.nodes]


def test_plain_graph_names_print_bare_and_others_quoted():
    assert str(conv_graph(name="net_1.v2")).startswith("graph @net_1.v2(")
    assert str(conv_graph(name="modèle")).startswith('graph @"mod\\u00e8le"(')
    assert str(conv_graph(name="my-net")).startswith('graph @"my-net"(')


# ---- fuzzing: mutations of valid texts ------------------------------------------------------

NUMBERS = ["0", "1", "-1", "2", "1.5", "1e0", "-0.0", "nan", "inf", "-inf", "300", "65536", "2147483649",
           "9223372036854775808", "1e999", "9" * 30]
SPECIAL = ['"', "\\", "[", "]", "{", "}", "%", "@", ",", "=", "\x00", "\ud800", 'b64"', "#", "\n", "return"]
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?")
_TOKEN = re.compile(r'\s+|"(?:[^"\\]|\\.)*"|[^\s(){}\[\],:="]+|.')


def _swap(items: list, i: int, j: int) -> list:
    items = list(items)
    items[i], items[j] = items[j], items[i]
    return items


@st.composite
def mutated_texts(draw):
    """A printed graph (one of BASE_TEXTS or a random one from edgec.testing.graphs) with one to three
    mutations: delete, duplicate or swap characters, lines or tokens, insert unicode, change a number."""
    if draw(st.booleans()):
        text = draw(st.sampled_from(BASE_TEXTS))
    else:
        text = edgec.print_ir(draw(graphs(max_steps=3)), full_constants=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["char", "line", "token", "insert", "number"]))
        if kind == "insert":
            i = draw(st.integers(0, len(text)))
            new = draw(st.text(max_size=4) | st.sampled_from(SPECIAL))
            text = text[:i] + new + text[i:]
            continue
        if kind == "number":
            spans = [m.span() for m in _NUMBER.finditer(text)]
            if spans:
                a, b = draw(st.sampled_from(spans))
                new = draw(st.sampled_from(NUMBERS) | st.integers(-2 ** 70, 2 ** 70).map(str))
                text = text[:a] + new + text[b:]
            continue
        sep = {"char": "", "line": "\n", "token": ""}[kind]
        items = (list(text) if kind == "char" else text.split("\n") if kind == "line"
                 else _TOKEN.findall(text))
        if not items:
            continue
        i = draw(st.integers(0, len(items) - 1))
        j = draw(st.integers(0, len(items) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap"]))
        items = (items[:i] + items[i + 1:] if op == "delete" else
                 items[:i + 1] + items[i:] if op == "duplicate" else _swap(items, i, j))
        text = sep.join(items)
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_texts())
def test_mutated_text_parses_to_a_verified_graph_or_a_clean_error(text):
    try:
        g = edgec.parse_ir(text)
    except EdgecError:
        return
    verify(g)
    again = edgec.print_ir(g, full_constants=True)
    assert edgec.print_ir(edgec.parse_ir(again), full_constants=True) == again
