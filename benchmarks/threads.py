"""The Quickstart's wall time, idle and under background load, and what --torch-threads does to it.

A user's machine is rarely idle. This times whole commands as a user runs them (a fresh process each, output
thrown away) with and without a background load of one CPU-bound process per core (a busy Python loop each,
started before and stopped after every timed run), and with --torch-threads 1 (the default of every script)
against 0 (torch's own default, one thread per core). Conditions alternate within each repeat, so a drift of
the machine's speed spreads over all of them; medians of --repeats, and the ratios of medians.

    python benchmarks/threads.py --repeats 3 --record

Rows: the full Quickstart (reinforce.py, its defaults) with --torch-threads 1, idle and loaded; then for each
of reinforce.py and actor_critic_gae.py a shorter run (--steps) with --torch-threads 1 and 0, idle and loaded.
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time

from run import RECORD_HELP, ROOT, commit, machine, output_folder, say_wrote  # benchmarks/run.py

BUSY = "while True: pass"


def timed(command: list[str], load: int) -> float:
    """Wall seconds of one run of command, with `load` busy processes running beside it."""
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
    try:
        time.sleep(0.5 if load else 0.0)  # the load is running before the run starts
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT / "benchmarks" / "runs", capture_output=True)
        return time.perf_counter() - start
    finally:
        for p in busy:
            p.kill()
            p.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40_960, help="environment steps of the shorter runs")
    parser.add_argument("--load", type=int, default=os.cpu_count(), help="busy processes of the background load")
    parser.add_argument("--record", action="store_true", help=RECORD_HELP)
    args = parser.parse_args()
    (ROOT / "benchmarks" / "runs").mkdir(exist_ok=True)  # the runs' own folders go there, never into the tree

    python = [sys.executable]
    quick = [*python, str(ROOT / "reinforce.py"), "--no-progress"]
    rows = [("Quickstart: reinforce.py (200k steps, 10 evaluation episodes)", quick + ["--torch-threads", "1"])]
    for script in ("reinforce.py", "actor_critic_gae.py"):
        short = [*python, str(ROOT / script), "--no-progress", "--eval-episodes", "0", "--total-timesteps"]
        for threads in (1, 0):
            rows.append(
                (
                    f"{script}, {args.steps} steps, --torch-threads {threads}",
                    short + [str(args.steps), "--torch-threads", str(threads)],
                )
            )
    times = {(name, load): [] for name, _ in rows for load in (0, args.load)}
    for repeat in range(args.repeats):
        for name, command in rows:
            for load in (0, args.load):
                times[name, load].append(timed(command, load))
                print(f"repeat {repeat + 1}: {name}, load {load}: {times[name, load][-1]:.1f} s", flush=True)

    median = {key: statistics.median(v) for key, v in times.items()}
    lines = [
        f"| command | idle, s | under load ({args.load} busy processes), s | loaded / idle |",
        "|---|---|---|---|",
    ]
    for name, _ in rows:
        idle, loaded = median[name, 0], median[name, args.load]
        lines.append(f"| {name} | {idle:.1f} | {loaded:.1f} | {loaded / idle:.2f} |")
    lines += [
        "",
        (
            f"Medians of {args.repeats} runs each, conditions alternating within each repeat; every run a fresh "
            "process with its output discarded. Load: one `python -c 'while True: pass'` per busy process."
        ),
        f"Machine: {machine()}. Commit: `{commit()}`.",
        "Command: `python " + " ".join(shlex.quote(a) for a in ["benchmarks/threads.py", *sys.argv[1:]]) + "`.",
    ]
    out = output_folder("threads", args.record)
    (out / "threads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    say_wrote(out, ["threads.md"], args.record)


if __name__ == "__main__":
    main()
