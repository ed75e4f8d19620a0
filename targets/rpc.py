"""Benchmarking an artifact on a remote device through TVM RPC.

    edgec bench DIR --rpc HOST:PORT [--key KEY] [--repeat N]

`bench(DIR, "HOST:PORT")` connects to a TVM RPC server (on the board: `python -m tvm.exec.rpc_server
--host 0.0.0.0 --port 9090` with the aarch64 apache-tvm wheel installed), or, with `key`, asks the
RPC tracker at HOST:PORT for a device registered under that key. It uploads the artifact's
`model.so`, loads it in a Relax VM on the remote CPU, feeds seeded random inputs that match the
manifest, and times `main` with TVM's time evaluator: one unmeasured warm-up run, then `repeat`
measured runs of `number` calls each. The report gives the median, min and max latency in
milliseconds and the outputs of one run (fetched back, so a caller can check them).

Connection failures, refused or timed-out sessions and remote errors are ToolErrors naming the
address; every socket operation is bounded by `timeout_s`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgec.errors import EdgecError, ToolError


@dataclass
class BenchReport:
    artifact: str
    target: str
    remote: str  # "HOST:PORT" or "HOST:PORT key=KEY"
    number: int  # calls averaged in each measured run
    latencies_ms: list[float]  # one per measured run
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def min_ms(self) -> float:
        return min(self.latencies_ms)

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ms)

    def format(self) -> str:
        return (f"{self.artifact} ({self.target}) on {self.remote}: median {self.median_ms:.3f} ms, "
                f"min {self.min_ms:.3f} ms, max {self.max_ms:.3f} ms over {len(self.latencies_ms)} runs")


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EdgecError(f"--rpc expects HOST:PORT (e.g. 192.168.1.20:9090), got '{address}'")
    return host, int(port)


def random_inputs(inputs, seed: int = 0) -> list[np.ndarray]:
    """Seeded inputs matching the manifest: floats in [-1, 1), integers 0 or 1, booleans."""
    rng = np.random.default_rng(seed)
    arrays = []
    for _, t in inputs:
        dt = t.np_dtype
        if dt.kind == "f":
            arrays.append(rng.uniform(-1, 1, t.shape).astype(dt))
        elif dt.kind == "b":
            arrays.append(rng.integers(0, 2, t.shape).astype(bool))
        else:
            arrays.append(rng.integers(0, 2, t.shape).astype(dt))
    return arrays


def connect(address: str, key: str | None = None, timeout_s: float = 60):
    """An RPC session: directly to a server, or through the tracker at `address` for `key`."""
    from tvm import rpc
    host, port = parse_address(address)
    try:
        if key:
            tracker = rpc.connect_tracker(host, port)
            return tracker.request(key, session_timeout=int(timeout_s), max_retry=1)
        return rpc.connect(host, port, session_timeout=int(timeout_s))
    except Exception as e:  # noqa: BLE001 - TVM raises RuntimeError/TVMError/socket errors
        what = f"the RPC tracker at {address} for key '{key}'" if key else f"the RPC server at {address}"
        raise ToolError(f"cannot reach {what}: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
                        "; start one on the board with `python -m tvm.exec.rpc_server --host 0.0.0.0 "
                        "--port 9090`") from None


def bench(artifact, address: str, key: str | None = None, repeat: int = 20, number: int = 1,
          timeout_s: float = 60, seed: int = 0, feeds: dict[str, np.ndarray] | None = None) -> BenchReport:
    """Time the artifact `main` on the remote device (see the module docstring)."""
    import socket

    import tvm
    from tvm import relax

    from edgec.driver import Artifact

    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    if repeat < 1 or number < 1:
        raise EdgecError("--repeat and the number of calls per run must be at least 1")
    arrays = art.check_inputs(feeds) if feeds is not None else random_inputs(art.inputs, seed)
    library = art.library
    remote_name = f"{address} key={key}" if key else address
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # bounds the connect and every receive of the session
    try:
        remote = connect(address, key, timeout_s)
        try:
            remote.upload(str(library))
            rlib = remote.load_module(Path(library).name)
            dev = remote.cpu()
            vm = relax.VirtualMachine(rlib, dev)
            vm.set_input("main", *[tvm.runtime.tensor(a, dev) for a in arrays])
            timer = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=repeat)
            result = timer("main")
            vm.invoke_stateful("main")
            outs = vm.get_outputs("main")  # `main` returns a tuple: a sequence of remote tensors
            outs = [outs] if hasattr(outs, "numpy") else list(outs)
            outputs = {name: o.numpy() for (name, _), o in zip(art.outputs, outs)}
        except EdgecError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ToolError(f"running {library} on {remote_name} failed: "
                            f"{str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}") from None
    finally:
        socket.setdefaulttimeout(old_timeout)
    return BenchReport(str(art.path), art.manifest["target"], remote_name, number,
                       [float(r) * 1e3 for r in result.results], outputs)
