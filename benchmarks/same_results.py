"""Same results before and after a change that should change none (a restructuring): short seeded runs of
every script at two commits, compared number for number.

Each run is a script's own main() on fixed flags, in a fresh process per commit and script: a CartPole run of
reinforce.py and actor_critic_gae.py, a BitFlip run of dqn_per_her.py (learning, evaluated), a short Pong run
of dqn_atari.py (past learning_starts: gradient steps and target updates) and a Breakout run of
actor_critic_gae.py, both on the NoFrameskip-v4 ids of the recorded Atari grids (the ALE/...-v5 ids became
sticky in dqn_atari.py at 3b9d1bb). A run matches when its step count, every training episode's return and every
evaluation return are identical. The commit before is checked out with `git worktree` into a temporary folder.

    python benchmarks/same_results.py --before 2e94715            # that commit against the working tree
    python benchmarks/same_results.py --before 2e94715 --record   # writes benchmarks/results/same_results/2e94715.md
    python benchmarks/same_results.py --before 3573a97 --only a2c  # the runs whose name holds "a2c": a commit
                                                                   # that recorded a grid against the working tree
    python benchmarks/same_results.py --before 8221a2d --only a2c --set vf_coef=0.5  # a default changed since:
                                                                   # the working tree's runs get the old value
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from run import RECORD_HELP, ROOT, commit, machine, output_folder, say_wrote  # benchmarks/run.py

RUNS = {
    "reinforce CartPole": ("reinforce", {"env_id": "CartPole-v1", "total_timesteps": 20480, "eval_episodes": 3}),
    "a2c CartPole": ("actor_critic_gae", {"env_id": "CartPole-v1", "total_timesteps": 20480, "eval_episodes": 3}),
    "her BitFlip": ("dqn_per_her", {"env_id": "BitFlip-v0", "n_bits": 8, "total_timesteps": 6000, "eval_episodes": 5}),
    "dqn Pong": (
        "dqn_atari",
        {"env_id": "PongNoFrameskip-v4", "total_timesteps": 3000, "buffer_size": 3000, "learning_starts": 1000},
    ),
    "a2c Breakout": ("actor_critic_gae", {"env_id": "BreakoutNoFrameskip-v4", "total_timesteps": 2560}),
}

# one run in a fresh interpreter: import the script from `root`, run main() in a scratch folder, print JSON
CHILD = """
import json, os, sys, tempfile
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
os.chdir(tempfile.mkdtemp())
module = __import__(sys.argv[2])
flags = {"progress": False, "cuda": False, "eval_episodes": 0, **json.loads(sys.argv[3])}
r = module.main(module.Args(**flags))
print("RESULT " + json.dumps({k: r.get(k) for k in ("global_step", "episodic_returns", "eval_returns")}))
"""


def run(root: Path, script: str, flags: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), script, json.dumps(flags)],
        check=True,
        capture_output=True,
        text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    ).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])


def value(text: str):
    """A --set value: JSON (0.5, true, null) or else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the commit to compare the working tree with")
    parser.add_argument("--only", default="", help="only the runs whose name holds this text (reinforce, a2c, ...)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        help="NAME=VALUE (JSON, or else text) for the working tree's runs: a default "
        "that changed since --before, e.g. vf_coef=0.5",
    )
    parser.add_argument("--record", action="store_true", help=RECORD_HELP)
    args = parser.parse_args()
    now = {name: value(text) for name, _, text in (item.partition("=") for item in args.set)}
    rows, same = [], True
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], check=True, cwd=ROOT)
        try:
            for name, (script, flags) in ((k, v) for k, v in RUNS.items() if args.only in k):
                a, b = run(before, script, flags), run(ROOT, script, flags | now)
                match = a == b
                same &= match
                episodes = len(b["episodic_returns"])
                rows.append(f"| {name} | {b['global_step']} | {episodes} | {len(b['eval_returns'] or [])} | {match} |")
                print(rows[-1], flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], check=True, cwd=ROOT)
    folder = output_folder("same_results", args.record)
    head = f"before {args.before}, after {commit()}{f' with {now}' if now else ''}; {machine()}\n\n"
    table = "| run | steps | training episodes | eval episodes | identical |\n|---|---|---|---|---|\n"
    name = "-".join([args.before, *([args.only] if args.only else []), *args.set]) + ".md"  # one file per comparison
    (folder / name).write_text(head + table + "\n".join(rows) + "\n")
    say_wrote(folder, [name], args.record)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
