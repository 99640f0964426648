"""Every command of the README's "Try this" runs as written, on a short budget: the same flags, then a few appended
that shorten the run (tyro takes the last value of a flag given twice). What each long run reaches is a benchmark
(benchmarks/readme_runs.py), not a test."""

import concurrent.futures
import importlib
import importlib.util
import os
import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
readme_runs = importlib.import_module("readme_runs")  # benchmarks/readme_runs.py: the commands and how to run them

SHORT = {  # appended to a command of each script: a few updates, no evaluation, no progress bar
    "reinforce.py": ["--total-timesteps", "4096"],
    "actor_critic_gae.py": ["--total-timesteps", "1024", "--autoencoder-steps", "64"],
    "dqn_atari.py": ["--total-timesteps", "600", "--buffer-size", "2000", "--learning-starts", "500"],
    "dqn_per_her.py": ["--total-timesteps", "1200", "--learning-starts", "1000"],
}


COMMANDS = [c for c, _ in readme_runs.try_this()]


def test_the_readme_has_the_commands():
    assert len(COMMANDS) >= 15 and any("torchrun" in c for c in COMMANDS)


def run_as_written(command: str, cwd) -> str | None:
    """Runs one command, shortened; None if it did what the README says, else what went wrong."""
    words = readme_runs.argv(command)
    script = next(w for w in command.split() if w.endswith(".py"))
    evaluation = ["--eval-episodes", "1" if "--capture-video" in words else "0"]
    result = subprocess.run(
        [*words, *SHORT[script], *evaluation, "--no-progress"],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if "--capture-video" in words and importlib.util.find_spec("moviepy") is None:  # as the README's comment says
        ok = result.returncode == 2 and "pip install moviepy" in result.stderr
    else:
        ok = result.returncode == 0 and "summary: step " in result.stdout and "Traceback" not in result.stderr
    return None if ok else f"{command}\n  exit {result.returncode}: {result.stderr[-1500:]}"


def test_every_try_this_command_runs_as_written(tmp_path):
    """Two at a time (2 cores); every failure is reported, not only the first."""
    folders = [tmp_path / str(i) for i in range(len(COMMANDS))]
    for folder in folders:
        folder.mkdir()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        failures = [f for f in pool.map(run_as_written, COMMANDS, folders) if f is not None]
    assert not failures, "\n".join(failures)
