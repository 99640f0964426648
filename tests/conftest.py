"""Shared helpers for the tests: the scripts live at the repository root and are imported as modules."""

import glob
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
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


def brute_force_targets(rewards, terminated, q_target, q_online, gamma, double_q) -> list[float]:
    """DQN's TD target, one transition at a time: r, or r + gamma Q_target(s', a') with a' the argmax of Q_target
    (of Q_online with double_q). Both DQN scripts are held to it."""
    out = []
    for i in range(len(rewards)):
        if terminated[i]:
            out.append(float(rewards[i]))
            continue
        a = int(np.argmax(q_online[i])) if double_q else int(np.argmax(q_target[i]))
        out.append(float(rewards[i] + gamma * q_target[i][a]))
    return out


def check_td_target(td_target, double_q: bool):
    """A DQN script's td_target on a random batch (terminations included) against brute_force_targets, and the
    two targets (max and double Q) told apart on it."""
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(-1, 2, (64,), generator=g).float()
    terminated = torch.rand(64, generator=g) < 0.3
    q_target, q_online = torch.randn(64, 6, generator=g), torch.randn(64, 6, generator=g)
    y = td_target(rewards, terminated, q_target, q_online, 0.97, double_q)
    want = brute_force_targets(rewards.numpy(), terminated.numpy(), q_target.numpy(), q_online.numpy(), 0.97, double_q)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-6)
    other = td_target(rewards, terminated, q_target, q_online, 0.97, not double_q)
    assert not torch.allclose(y, other)  # the two targets differ on this batch


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run folders (runs/...) land in a fresh temporary directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


class Clock(gym.Env):
    """A tiny environment whose every value is known: the observation is [t], the steps taken in the episode; the
    reward is 1 whatever the action; with end_at the episode terminates at t = end_at. Registered below with a
    time limit of 5 steps: ClockTruncated-v0 only truncates, ClockEndsAtLimit-v0 terminates on the very step the
    limit truncates it (gymnasium then sets both flags). So the true final observation is [5], and the next
    episode's first is [0]."""

    def __init__(self, end_at: int | None = None, discrete: bool = True):
        self.end_at = end_at
        self.observation_space = gym.spaces.Box(0.0, 100.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2) if discrete else gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)], np.float32), 1.0, self.t == self.end_at, False, {}


CLOCK_LIMIT = 5
for _id, _kwargs in [("ClockTruncated-v0", {}), ("ClockEndsAtLimit-v0", {"end_at": CLOCK_LIMIT})]:
    if _id not in gym.registry:
        gym.register(_id, entry_point=Clock, kwargs=_kwargs, max_episode_steps=CLOCK_LIMIT)
