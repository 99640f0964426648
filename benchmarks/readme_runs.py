"""The README's "Try this" commands at their full length: what each run reached, beside what the README's comment
on it says, for a reader to compare before a release. tests/test_readme.py runs the same commands on a short
budget in every test run; these take from seconds (CartPole) to days (10M Atari steps on a CPU).

Each command runs as written, one at a time, from benchmarks/runs/readme_runs/ (its run folder lands there),
with --no-progress appended. The table gives its exit status, wall time, the summary line's steps and training
return (and success rate), and the evaluation line; --only picks the commands that hold any of its texts.

    python benchmarks/readme_runs.py --only reinforce.py              # the five REINFORCE commands
    python benchmarks/readme_runs.py --only dqn_per_her.py --record   # writes benchmarks/results/readme_runs/
    python benchmarks/readme_runs.py --only gae-lambda torchrun NoVelocity   # A2C's CartPole commands
"""

import argparse
import re
import subprocess
import sys
import time

from run import RECORD_HELP, ROOT, commit, machine, output_folder, say_wrote  # benchmarks/run.py


def try_this() -> list[tuple[str, str]]:
    """(command, what the README says of it) for each command of the README's "Try this" blocks that runs as written
    (continuation lines joined): the comment at its end, or else the comment line above it."""
    section = re.search(r"### Try this\n(.*?)\n### ", (ROOT / "README.md").read_text(), re.DOTALL).group(1)
    text = "\n".join(re.findall(r"```bash\n(.*?)```", section, re.DOTALL)).replace("\\\n", " ")
    commands, above = [], ""
    for line in text.splitlines():
        if line.startswith("# "):  # a comment line says what the command below it does
            above = line[2:]
        elif line.startswith(".venv/") and "<time>" not in line:  # a resume line names a run the reader made
            command, _, comment = line.partition("  #")
            commands.append((" ".join(command.split()), comment.strip() or above))
            above = ""
    return commands


def argv(command: str) -> list[str]:
    """The command's words with this interpreter for .venv/bin/python (torchrun as its module) and the script's
    full path, so that it runs from any folder."""
    words = command.split()
    torchrun = words[0].endswith("torchrun")
    python = [sys.executable, "-m", "torch.distributed.run"] if torchrun else [sys.executable]
    return [*python, *(str(ROOT / w) if w.endswith(".py") else w for w in words[1:])]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="only the commands that hold any of these texts")
    parser.add_argument("--record", action="store_true", help=RECORD_HELP)
    args = parser.parse_args()
    cwd = ROOT / "benchmarks" / "runs" / "readme_runs"
    cwd.mkdir(parents=True, exist_ok=True)
    rows = []
    for command, comment in try_this():
        if args.only and not any(text in command for text in args.only):
            continue
        start = time.perf_counter()
        out = subprocess.run([*argv(command), "--no-progress"], cwd=cwd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        summary = re.search(r"summary: step (\d+).*?; (.*)", out.stdout)  # steps; the training return
        evaluation = re.search(r"eval: (.*)", out.stdout)
        found = [summary.group(1), summary.group(2)] if summary else ["-", "-"]
        cells = [f"`{command.removeprefix('.venv/bin/')}`", comment, str(out.returncode), f"{wall:.0f}", *found]
        cells.append(evaluation.group(1) if evaluation else "-")
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    head = f"Commit {commit()}; {machine()}; one command at a time.\n\n"
    table = "| command | the README says | exit | wall s | steps | training (summary) | eval |\n"
    table += "|---|---|---|---|---|---|---|\n"
    folder = output_folder("readme_runs", args.record)
    name = "-".join(["readme_runs", *(re.sub(r"[^A-Za-z0-9.]+", "_", text) for text in args.only)]) + ".md"
    (folder / name).write_text(head + table + "\n".join(rows) + "\n")
    say_wrote(folder, [name], args.record)


if __name__ == "__main__":
    main()
