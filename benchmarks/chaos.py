"""The chaos scenario at scale: seeded faults, cancellation, faulty SPIs and shutdowns.

Run: ``python benchmarks/chaos.py [--operations N] [--seed S] [--concurrency C]``.

Runs the engine of ``tests/runtime/test_chaos.py`` (``tests/runtime/_chaos.py``, loaded by
file path since ``tests/`` is not a package) once, by default for 100,000 operations, on a
``MockClock`` that jumps once every task has been blocked for ``--autojump`` seconds of
real time, and prints every figure as ``key=value``, one a line. The figures listed in
``violations`` must be zero; ``--check`` makes the exit status say whether they are.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from functools import partial
from pathlib import Path
from types import ModuleType

import trio
import trio.testing

ENGINE = Path(__file__).resolve().parent.parent / "tests" / "runtime" / "_chaos.py"


def load_engine() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cloudkit_chaos", ENGINE)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the chaos engine from {ENGINE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # attrs and dataclass machinery look modules up here
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--phases", type=int, default=None, help="runs of the context")
    parser.add_argument(
        "--autojump", type=float, default=0.005, help="MockClock autojump threshold (s)"
    )
    parser.add_argument(
        "--spi-faults",
        default=None,
        help="comma-separated SPIs that misbehave (default: auth,logger,metrics,retry,signer)",
    )
    parser.add_argument("--max-real-seconds", type=float, default=1800.0)
    parser.add_argument("--check", action="store_true", help="exit 1 if any violation")
    args = parser.parse_args()
    engine = load_engine()
    spi_faults = engine.SPIS if args.spi_faults is None else args.spi_faults.split(",")
    if args.spi_faults == "":
        spi_faults = ()
    run = partial(
        engine.run_chaos,
        args.seed,
        args.operations,
        args.concurrency,
        phases=args.phases,
        max_real_seconds=args.max_real_seconds,
        spi_faults=spi_faults,
    )
    figures = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=args.autojump))
    for line in figures.lines():
        print(line)
    violations = figures.violations()
    print("violations=" + (",".join(f"{k}:{v}" for k, v in violations.items()) or "-"))
    if args.check and violations:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
