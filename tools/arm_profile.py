"""Guest instructions per inference on ARM, broken down by function of every library the run
executes (model.so's kernels, libtvm_runtime.so, libc, ...), and its hottest blocks.

    python tools/arm_profile.py MODEL.onnx                    # compile for arm-a72 at -O2, profile
    python tools/arm_profile.py MODEL.onnx --keep DIR --top 30
    python tools/arm_profile.py --artifact DIR                # an already compiled artifact
    aarch64-linux-gnu-objdump -d --no-show-raw-insn DIR/model.so | less   # then read the hot kernels

`edgec profile DIR` gives the same counts per kernel of the manifest, with the runtime as one
overhead figure; this tool lists the functions themselves. Both count with
edgec.targets.profile.count_functions (see its module docstring): edgec-run under
`qemu-aarch64 -cpu <core>` with the per-block plugin, once with 1 inference and once with
1 + RUNS, one thread. TVM's parallel loops become `<kernel>_compute_` functions; blocks outside
any known library are shown as [unknown]; names in stripped libraries (the wheel's
libtvm_runtime.so) are only approximate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path


def label(library: str, function: str) -> str:
    return f"{Path(library).name}:{function}" if library else function


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", type=Path, help="ONNX model to compile")
    parser.add_argument("--artifact", type=Path, help="profile this compiled artifact directory instead")
    parser.add_argument("--target", default="arm-a72")
    parser.add_argument("--level", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1, help="inferences counted (after one baseline run)")
    parser.add_argument("--top", type=int, default=25, help="functions to list")
    parser.add_argument("--blocks", metavar="TEXT",
                        help="also list the hottest translated blocks (library offsets, for objdump) of the "
                             "functions whose name contains TEXT")
    parser.add_argument("--keep", type=Path, help="compile into this directory (kept) instead of a temporary one")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.artifact is None):
        parser.error("give a MODEL or --artifact DIR")

    import edgec
    from edgec.targets.profile import build_plugin, count_functions
    from edgec.targets.runners import qemu_cpu

    with tempfile.TemporaryDirectory(prefix="arm-profile.") as tmp:
        work = Path(tmp)
        if args.artifact is not None:
            art = edgec.load(args.artifact)
        else:
            art_path = args.keep or work / f"{args.model.stem}-{args.target}"
            art = edgec.compile(args.model, target=args.target, output=art_path, level=args.level).artifact
        target = art.manifest["target"]
        plugin = build_plugin()
        cpu = qemu_cpu(target)
        base_blocks: Counter = Counter()
        more_blocks: Counter = Counter()
        base, base_total = count_functions(art, plugin, 1, work, base_blocks)
        more, more_total = count_functions(art, plugin, 1 + args.runs, work, more_blocks)
        per: Counter = Counter()
        for k, n in more.items():
            per[label(*k)] += (n - base.get(k, 0)) / args.runs
        total = (more_total - base_total) / args.runs
        print(f"{art.path.name}: {total:,.0f} guest instructions per inference ({target}, {cpu})")
        print(f"{'insns/inf':>14} {'share':>6}  function")
        for name, n in sorted(per.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"{n:>14,.0f} {100 * n / total if total else 0:>5.1f}%  {name}")
        if args.blocks:
            hot = {k: (more_blocks[k] - base_blocks.get(k, 0)) / args.runs for k in more_blocks
                   if args.blocks in label(*k[:2])}
            print(f"\nhottest blocks of functions matching '{args.blocks}':")
            print(f"{'insns/inf':>14} {'offset':>10}  function")
            for (library, function, offset), n in sorted(hot.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"{n:>14,.0f} {offset:>10x}  {label(library, function)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
