"""Shared helpers for the tests: the scripts live at the repository root and are imported as modules."""

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)  # tiny networks: one thread is faster and keeps two test workers from fighting


def run_script(script: str, *flags: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a script as a user would, from a scratch folder, capturing its output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    return subprocess.run(
        check=False,
        args=[sys.executable, str(ROOT / script), *flags],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalars of a run folder, read with tensorboard's own reader: {tag: [(step, value), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert glob.glob(os.path.join(run_dir, "events.out.tfevents.*")), f"no event file in {run_dir}"
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})  # all event files, in order (resumed runs)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run folders (runs/...) land in a fresh temporary directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
