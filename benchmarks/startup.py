"""Wall time of whole `lossopt train` commands, with and without the start-up heap
handling of ``core/_startup_heap.py``.

Usage::

    python benchmarks/startup.py [--repeats 4] [--command single|sweep|all]

Importing torch, Lightning, MLflow and Hydra creates ~800,000 objects that live as long
as the process; `lossopt train` keeps the garbage collector off while they are created
and freezes them before its first job. This benchmark runs the real CLI in two
variants, alternated (a, b then b, a, …) so that drift on a shared machine hits both:

- ``shipped``: the command as users run it;
- ``collecting``: the same command with ``starting_up()`` replaced by a no-op, so the
  collector runs through the imports as in any Python process.

Commands, each run in a fresh folder (fresh SQLite store, MLflow tracking on):

- ``single``: ``lossopt train`` — the default experiment, the README's main job;
- ``sweep``: ``lossopt train -m`` of 8 one-epoch jobs (2 losses × 2 optimizers × 2 lr).

Time: wall time of the whole process, interpreter start and exit included, median over
the repetitions, and the median of the shipped/collecting ratios paired within each
repetition.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "single": ["train", "trainer.enable_progress_bar=false"],
    "sweep": [
        "train",
        "-m",
        "loss=cross_entropy,focal",
        "optimizer=adam,sgd",
        "optimizer.lr=0.01,0.001",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    ],
}
VARIANTS = ("shipped", "collecting")

# Runs lossopt's CLI in this interpreter; argv[1] picks the variant.
LAUNCHER = """
import contextlib, sys
import lossopt.core._startup_heap as heap
if sys.argv[1] == "collecting":
    heap.starting_up = contextlib.nullcontext
from lossopt.core.cli import main
sys.exit(main(sys.argv[2:]))
"""


def timed_run(variant: str, args: list[str], work: Path) -> float:
    work.mkdir(parents=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", LAUNCHER, variant, *args], cwd=work, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"lossopt {' '.join(args)} failed ({variant}):\n{result.stderr[-3000:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--command", choices=[*COMMANDS, "all"], default="all")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    commands = list(COMMANDS) if args.command == "all" else [args.command]

    walls = {(c, v): [] for c in commands for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="lossopt-startup-") as tmp:
        for repeat in range(args.repeats):
            order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
            for command in commands:
                for variant in order:
                    work = Path(tmp) / f"{command}-{variant}-{repeat}"
                    walls[command, variant].append(timed_run(variant, COMMANDS[command], work))
                shipped, collecting = (walls[command, v][-1] for v in VARIANTS)
                print(
                    f"repeat {repeat + 1}/{args.repeats} {command}: shipped {shipped:.2f} s"
                    f"  collecting {collecting:.2f} s",
                    flush=True,
                )

    print(f"\n`python benchmarks/startup.py --repeats {args.repeats} --command {args.command}`\n")
    print(
        "| command | collector on during start-up (s) | shipped (s) | paired shipped/collecting |"
    )
    print("|---|---:|---:|---:|")
    for command in commands:
        shipped, collecting = walls[command, "shipped"], walls[command, "collecting"]
        paired = statistics.median(s / c for s, c in zip(shipped, collecting, strict=True))
        print(
            f"| {command} | {statistics.median(collecting):.2f} | {statistics.median(shipped):.2f}"
            f" | {paired:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
