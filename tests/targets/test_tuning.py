"""`edgec tune` (targets/schedules/tuning.py): the tuner searches the knobs of edgec's tiled rule.

- every setting of a kernel's space computes what the unscheduled kernel computes (TVM's plain
  build of the same PrimFunc is the oracle; conv, dense, batched matmul);
- a small-budget tuning of a tiny model writes the database (keys: target string, structural
  hashes), `edgec compile --tuning-db` reports the tuned kernels and matches ONNX Runtime;
- resuming never measures a setting twice; another target's database applies to nothing;
- an ARM target without --rpc is an error; tuning through a loopback RPC server works.
Measurements use one short repeat each: these tests check behaviour, not speed.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import tvm
from onnx import helper

import edgec
from edgec.cli import main as cli_main
from edgec.errors import EdgecError
from edgec.targets import get_target
from edgec.targets.lower import lower_graph
from edgec.targets.schedules import rules, schedule_func
from edgec.targets.schedules import tuning
from onnx_util import assert_close, make_model, node_model, run_ort

rng = np.random.default_rng(11)
HOST = get_target("host")


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def conv_model():
    """Conv (8 -> 32 channels, 3x3) + bias + Relu, then a 2x2 MaxPool: two tunable kernels."""
    x = rand(1, 8, 8, 8)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    return make_model(nodes, {"x": x}, ["y"], {"w": rand(32, 8, 3, 3), "b": rand(32)}), {"x": x}


def optimized(model, target=HOST, level=2):
    """The graph `edgec compile --target T -O level` builds (and `edgec tune` tunes): the kernels
    of a tuning database are those of the optimized graph."""
    return edgec.optimize(edgec.import_onnx(model), target=target.name, level=level)


def kernels_of(model, target=HOST):
    mod = lower_graph(optimized(model, target), target)
    return tuning.extract_kernels(mod, target)


def quick_runner(**kw):
    return tuning.LocalRunner(HOST.tvm_target(), repeat=1, min_repeat_ms=0, **kw)


def run_kernel(func, arrays):
    """Build `func` alone for the host and run it in place on copies of `arrays`."""
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=HOST.tvm_target())
    tensors = [tvm.runtime.tensor(a.copy()) for a in arrays]
    lib["main"](*tensors)
    return [t.numpy() for t in tensors]


@pytest.mark.parametrize("case", ["conv", "dense", "batch_matmul"])
def test_every_setting_matches_the_unscheduled_kernel(case):
    if case == "conv":
        model, _ = conv_model()
    elif case == "dense":
        model = node_model("Gemm", {"x": rand(8, 24)}, {"w": rand(24, 32), "c": rand(32)})
    else:
        model = node_model("MatMul", {"a": rand(2, 8, 12)}, {"b": rand(2, 12, 32)})
    tunable = [k for k in kernels_of(model) if len(k.space) > 1]
    assert tunable, "no kernel with a tuning space"
    checked = 0
    for k in tunable:
        assert k.space[0] == rules.tiled_reduction_space(k.func, HOST.vector_bits)[0]
        args = tuning._random_args(k.func, seed=3)  # noqa: SLF001 - the tuner's own inputs
        expected = run_kernel(k.func, args)
        for knobs in k.space:
            packs: list = []
            func, rule = schedule_func(k.func, HOST, k.constant_params, packs, knobs)
            assert rule == "tiled_reduction", (k.name, knobs)
            packed = list(args)
            for index, vf in packs:
                packed[index] = rules.repack(args[index], vf)
            got = run_kernel(func, packed)
            for i, (g, e) in enumerate(zip(got, expected)):
                if any(i == index for index, _ in packs):
                    continue
                np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4, err_msg=f"{k.name} {knobs} arg {i}")
            checked += 1
    assert checked >= 3


def test_candidate_order_and_allocation():
    space = [{"vf": 32, "rf": 8}, {"vf": 16, "rf": 1}, {"vf": 32, "rf": 4}, {"vf": 64, "rf": 2}, {"vf": 32, "rf": 7}]
    order = tuning.candidate_order(space)
    assert order[0] == space[0] and sorted(map(str, order)) == sorted(map(str, space))
    assert order[1] == {"vf": 32, "rf": 7}  # nearest to the default
    assert order[-1] == {"vf": 16, "rf": 1}  # farthest
    give = tuning.allocate([10.0, 1.0, 0.0], [3, 50, 50], 20)
    assert sum(give) == 20 and give[0] == 3 and give[1] > give[2]
    assert tuning.allocate([1.0, 1.0], [2, 2], 100) == [2, 2]
    assert tuning.allocate([1.0], [5], 0) == [0]


def _db(path):
    return json.loads((path / tuning.DB_FILE).read_text())


def test_tune_then_compile_matches_ort(tmp_path, capsys):
    model, feeds = conv_model()
    tunable = {k.hash: k for k in kernels_of(model) if len(k.space) > 1}
    assert len(tunable) >= 2
    runner = quick_runner()
    graph = optimized(model)
    report = tuning.tune_graph(graph, HOST, tmp_path / "db", trials=8, runner=runner, stream=io.StringIO())
    assert runner.count == report.measured == 8
    data = _db(tmp_path / "db")
    key = tuning.target_key(HOST.tvm_target())
    assert list(data["records"]) == [key]
    records = data["records"][key]
    assert set(records) == set(tunable)  # every tunable kernel at least has its default measured
    assert sum(len(r["measurements"]) for r in records.values()) == 8
    for h, rec in records.items():
        assert rec["kernel"] == tunable[h].name
        assert rec["best"] in tunable[h].space
        assert any(m["knobs"] == tunable[h].space[0] for m in rec["measurements"])  # the default
    text = (tmp_path / "db" / tuning.DB_FILE).read_text()
    assert text == json.dumps(data, indent=1, sort_keys=True) + "\n"  # sorted keys

    model_path = tmp_path / "m.onnx"
    model_path.write_bytes(model.SerializeToString())
    rc = cli_main(["compile", str(model_path), "--target", "host", "-o", str(tmp_path / "art"),
                   "--tuning-db", str(tmp_path / "db")])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"{len(tunable)} of " in out and "kernels tuned" in out, out
    result = edgec.load(tmp_path / "art").run(feeds)
    assert_close(result, run_ort(model, feeds), what="tuned")


def test_a_rerun_plans_what_the_first_run_planned(tmp_path):
    """Confirmation rounds lower a default's "ms" (the fastest round), by how much depends on the
    machine's load; the budget is shared by the defaults' first rounds, so a rerun with the same
    budget measures nothing however the rounds went. Scripted times: a setting's first round
    takes 1-7 ms, later rounds a kernel-dependent fraction of it."""
    class Scripted:
        def __init__(self):
            self.count, self.seen = 0, {}

        def measure(self, func):
            self.count += 1
            h = int(tuning.kernel_hash(func))  # the scheduled func: one hash per setting
            rounds = self.seen[h] = self.seen.get(h, 0) + 1
            return (1 + h % 7) / (1 if rounds == 1 else 2 + (h >> 3) % 5)

        def close(self):
            pass

    graph = edgec.import_onnx(conv_model()[0])
    first, second = Scripted(), Scripted()
    tuned = tuning.tune_graph(graph, HOST, tmp_path / "db", trials=80, runner=first, stream=io.StringIO())
    assert first.count > 40 and len(tuned.speedups) == 2  # both kernels measured, confirmed
    report = tuning.tune_graph(graph, HOST, tmp_path / "db", trials=80, runner=second, stream=io.StringIO())
    assert second.count == 0 and report.measured == 0


def test_resume_does_not_measure_twice(tmp_path):
    model, _ = conv_model()
    graph = edgec.import_onnx(model)

    class Interrupting:
        """A runner that stops the run (like Ctrl-C) after `limit` measurements."""

        def __init__(self, limit):
            self.inner, self.limit, self.count = quick_runner(), limit, 0

        def measure(self, func):
            if self.count == self.limit:
                raise KeyboardInterrupt
            self.count += 1
            return self.inner.measure(func)

        def close(self):
            pass

    first = Interrupting(5)
    with pytest.raises(KeyboardInterrupt):
        tuning.tune_graph(graph, HOST, tmp_path / "db", trials=80, runner=first, stream=io.StringIO())
    saved = sum(len(r["measurements"]) for t in _db(tmp_path / "db")["records"].values() for r in t.values())
    assert saved == 5  # what was measured before the interruption is kept
    second = quick_runner()
    tuning.tune_graph(graph, HOST, tmp_path / "db", trials=80, runner=second, stream=io.StringIO())
    records = [rec for t in _db(tmp_path / "db")["records"].values() for rec in t.values()]
    rounds = sum(len(m["runs"]) for rec in records for m in rec["measurements"])
    assert second.count > 0 and rounds == 5 + second.count <= 80  # nothing measured twice by the resume
    # With 80 trials there is room for confirmation rounds: the default and the best settings
    # are measured twice more (kept in "runs", the fastest is "ms").
    assert any(len(m["runs"]) == 1 + tuning.CONFIRM_ROUNDS for rec in records for m in rec["measurements"])
    third = quick_runner()
    report = tuning.tune_graph(graph, HOST, tmp_path / "db", trials=80, runner=third, stream=io.StringIO())
    assert third.count == 0 and report.measured == 0 and report.reused == rounds
    for rec in records:
        ids = [json.dumps(m["knobs"], sort_keys=True) for m in rec["measurements"]]
        assert len(ids) == len(set(ids))  # one entry per setting
        assert all(m["ms"] == min(m["runs"]) > 0 for m in rec["measurements"])


def test_database_of_another_target_applies_to_nothing(tmp_path, capsys):
    model, feeds = conv_model()
    graph = optimized(model)
    other = dataclasses.replace(HOST, tvm={"kind": "llvm", "mcpu": "x86-64"})  # runs on any x86 machine
    assert tuning.target_key(other.tvm_target()) != tuning.target_key(HOST.tvm_target())
    mod = lower_graph(graph, HOST)
    tuning.tune(mod, other, tmp_path / "db", trials=3,
                runner=tuning.LocalRunner(other.tvm_target(), repeat=1, min_repeat_ms=0), stream=io.StringIO())
    hashes = set(_db(tmp_path / "db")["records"][tuning.target_key(other.tvm_target())])
    assert hashes == {k.hash for k in kernels_of(model) if k.space}  # same kernels: only the target differs
    model_path = tmp_path / "m.onnx"
    model_path.write_bytes(model.SerializeToString())
    rc = cli_main(["compile", str(model_path), "--target", "host", "-o", str(tmp_path / "art"),
                   "--tuning-db", str(tmp_path / "db")])
    assert rc == 0 and "0 of " in capsys.readouterr().out
    assert_close(edgec.load(tmp_path / "art").run(feeds), run_ort(model, feeds))


def test_matmul_tuned_and_softmax_falls_back(tmp_path):
    """A database made from a matmul model, used for a matmul + softmax model: the matmul kernel
    is "tuned", the softmax keeps its default rule, and the result matches ONNX Runtime."""
    from tvm import relax
    from edgec.targets.build import build_graph
    x = rand(8, 32)
    w = rand(32, 32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Softmax", ["y"], ["z"], axis=-1)]
    model = make_model(nodes, {"x": x}, ["z"], {"w": w})
    matmul_only = edgec.import_onnx(node_model("MatMul", {"x": x}, {"w": w}))
    tuning.tune_graph(matmul_only, HOST, tmp_path / "db", trials=3, runner=quick_runner(), stream=io.StringIO())
    report: dict = {}
    built = build_graph(edgec.import_onnx(model), HOST, tuning_db=str(tmp_path / "db"), report=report)
    assert report == {"k0_matmul": "tuned", "k1_softmax": "rowwise"}, report
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x))[0].numpy()
    assert_close({"z": got}, run_ort(model, {"x": x}), what="tuned")


def test_arm_target_without_rpc_is_an_error(tmp_path, capsys):
    model, _ = conv_model()
    with pytest.raises(EdgecError, match="--rpc"):
        tuning.tune_graph(optimized(model, get_target("arm-a72")), get_target("arm-a72"), tmp_path / "db", trials=2)
    model_path = tmp_path / "m.onnx"
    model_path.write_bytes(model.SerializeToString())
    rc = cli_main(["tune", str(model_path), "--target", "arm-a72", "--db", str(tmp_path / "db"), "--trials", "2"])
    assert rc == 2 and "--rpc" in capsys.readouterr().err


def test_missing_database_is_an_error(tmp_path):
    model, _ = conv_model()
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgecError, match="edgec tune"):
        edgec.compile(model, target="host", tuning_db=tmp_path / "empty")


@pytest.fixture(scope="module")
def server():
    from tvm import rpc as tvm_rpc
    srv = tvm_rpc.Server(host="127.0.0.1", port=9400, port_end=9600, silent=True, timeout=60)
    yield f"127.0.0.1:{srv.port}"
    srv.terminate()


def test_tuning_over_loopback_rpc(server, tmp_path):
    model, feeds = conv_model()
    runner = tuning.RPCRunner(HOST.tvm_target(), HOST.arch, server, repeat=1, min_repeat_ms=0, timeout_s=60)
    assert runner.where == server
    report = tuning.tune_graph(optimized(model), HOST, tmp_path / "db", trials=4, runner=runner,
                               stream=io.StringIO())
    assert runner.count == report.measured == 4
    records = _db(tmp_path / "db")["records"][tuning.target_key(HOST.tvm_target())]
    times = [m["ms"] for r in records.values() for m in r["measurements"]]
    assert len(times) == 4 and all(t is not None and t > 0 for t in times)
    result = edgec.compile(model, target="host", output=tmp_path / "art", tuning_db=tmp_path / "db")
    assert sum(r == "tuned" for r in result.schedules.values()) == len(records)
    assert_close(result.artifact.run(feeds), run_ort(model, feeds))


def test_arm_candidates_are_cross_linked_for_the_board(tmp_path, monkeypatch):
    """The RPC runner for an ARM target uploads each candidate as an aarch64 shared library
    (edgec's cross linker). No board here: a stand-in for the RPC session keeps the uploaded
    file and fails to load it, which must surface as a ToolError naming the server."""
    from edgec.errors import ToolError
    from edgec.targets import crosslink, rpc
    try:
        crosslink.find_toolchain()
    except ToolError:
        pytest.skip("no aarch64 cross linker")
    uploaded = []

    class NoBoard:
        def upload(self, path):
            uploaded.append(crosslink.elf_machine(path))

        def load_module(self, name):
            raise RuntimeError("no board behind this session")

        def get_function(self, name):
            raise RuntimeError("no board behind this session")

    monkeypatch.setattr(rpc, "connect", lambda address, key=None, timeout_s=60: NoBoard())
    model, _ = conv_model()
    a72 = get_target("arm-a72")
    with pytest.raises(ToolError, match="10.0.0.9:9090"):
        tuning.tune_graph(optimized(model, a72), a72, tmp_path / "db", trials=2, rpc="10.0.0.9:9090",
                          stream=io.StringIO())
    assert uploaded == ["aarch64"]


def test_records_of_other_schedule_rules_are_not_used(tmp_path, monkeypatch, capsys):
    """The database key holds the rules' fingerprint: once the rules change, old records (whose
    knob settings would now mean other schedules) apply to nothing."""
    model, _ = conv_model()
    tuning.tune_graph(optimized(model), HOST, tmp_path / "db", trials=3,
                      runner=tuning.LocalRunner(HOST.tvm_target(), repeat=1, min_repeat_ms=0), stream=io.StringIO())
    model_path = tmp_path / "m.onnx"
    model_path.write_bytes(model.SerializeToString())
    args = ["compile", str(model_path), "--target", "host", "-o", str(tmp_path / "art"), "--tuning-db", str(tmp_path / "db")]
    assert cli_main(args) == 0 and "0 of " not in capsys.readouterr().out  # the same rules: tuned kernels
    monkeypatch.setattr(tuning, "rules_version", lambda: "000000000000")  # as if rules.py had changed
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "0 of " in out and "run `edgec tune` again" in out


def test_int8_dot_product_kernels_are_not_tuned():
    """On a dot-product core the int8 matmul is scheduled by the sdot rule, not the tiled one:
    it has no tuning space (its settings would all be refused). On arm-a72 it is a tiled kernel."""
    a = rng.integers(-128, 128, (8, 64)).astype(np.int8)
    b = rng.integers(-128, 128, (64, 32)).astype(np.int8)
    model = node_model("MatMulInteger", {"a": a}, {"b": b})
    a76 = get_target("arm-a76")
    dot = kernels_of(model, a76)
    assert [k.name for k in dot] == ["k0_matmul_integer"]
    assert schedule_func(dot[0].func, a76)[1] == "int8_dot"
    assert dot[0].space == []
    assert any(k.space for k in kernels_of(model, get_target("arm-a72")))
