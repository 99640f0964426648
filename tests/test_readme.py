"""Every command of the README's "Try this" runs as written, on a short budget: the same flags, then a few appended
that shorten the run (tyro takes the last value of a flag given twice). What each long run reaches is a benchmark
(benchmarks/README.md), not a test."""

import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT

SHORT = {  # appended to a command of each script: a few updates, no evaluation, no progress bar
    "reinforce.py": ["--total-timesteps", "4096"],
    "actor_critic_gae.py": ["--total-timesteps", "1024", "--autoencoder-steps", "64"],
    "dqn_atari.py": ["--total-timesteps", "600", "--buffer-size", "2000", "--learning-starts", "500"],
    "dqn_per_her.py": ["--total-timesteps", "1200", "--learning-starts", "1000"],
}


def try_this() -> list[str]:
    """The commands of the README's "Try this" code blocks, continuation lines joined, comments dropped."""
    section = re.search(r"### Try this\n(.*?)\n### ", (ROOT / "README.md").read_text(), re.DOTALL).group(1)
    text = "\n".join(re.findall(r"```bash\n(.*?)```", section, re.DOTALL)).replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in text.splitlines() if line.startswith(".venv/")]


COMMANDS = [c for c in try_this() if "<time>" not in c]  # a resume line names the run a reader made


def test_the_readme_has_the_commands():
    assert len(COMMANDS) >= 15 and any("torchrun" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_try_this_command_runs_as_written(command, tmp_path):
    words = shlex.split(command)
    script = next(w for w in words if w.endswith(".py"))
    if words[0] == ".venv/bin/torchrun":
        words = [sys.executable, "-m", "torch.distributed.run", *words[1:]]
    else:
        words = [sys.executable, *words[1:]]
    words = [str(ROOT / w) if w == script else w for w in words]
    evaluation = ["--eval-episodes", "1" if "--capture-video" in words else "0"]
    result = subprocess.run(
        [*words, *SHORT[script], *evaluation, "--no-progress"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if "--capture-video" in words and importlib.util.find_spec("moviepy") is None:  # as the README's comment says
        assert result.returncode == 2 and "pip install moviepy" in result.stderr, result.stderr[-2000:]
        return
    assert result.returncode == 0, result.stderr[-2000:]
    assert "summary: step " in result.stdout and "Traceback" not in result.stderr
