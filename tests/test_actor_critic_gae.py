"""actor_critic_gae.py: GAE against brute force, bootstrapping at every kind of edge, distributed training,
checkpoints, Atari preprocessing in the loop, and learning."""

import json
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ROOT, scalars

import actor_critic_gae as A


def make_batch(T=10, N=4, seed=0):
    """Rewards and values with terminations, truncations (each with its own final value) and rollout ends."""
    rng = np.random.default_rng(seed)
    terminations = np.zeros((T, N), bool)
    truncations = np.zeros((T, N), bool)
    terminations[[2, 6], 0] = True
    truncations[4, 1] = True
    terminations[8, 1] = True
    truncations[[0, 1, 9], 2] = True  # column 3 never ends: pure rollout-end bootstrapping
    tensors = {
        "rewards": rng.normal(size=(T, N)),
        "values": rng.normal(size=(T, N)),
        "last_value": rng.normal(size=N),
        "final_values": np.where(truncations, rng.normal(size=(T, N)) * 5, 0.0),
        "terminations": terminations,
        "truncations": truncations,
    }
    return {k: torch.as_tensor(v, dtype=torch.bool if v.dtype == bool else torch.float64) for k, v in tensors.items()}


def brute_force(b, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, walking forward until the episode ends or the rollout does."""
    T, N = b["rewards"].shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                if b["terminations"][k, n]:
                    following = 0.0
                elif b["truncations"][k, n]:
                    following = b["final_values"][k, n]
                else:
                    following = b["values"][k + 1, n] if k + 1 < T else b["last_value"][n]
                total += weight * (b["rewards"][k, n] + gamma * following - b["values"][k, n])
                if b["terminations"][k, n] or b["truncations"][k, n]:
                    break
                weight *= gamma * lam
            out[t, n] = total
    return out


def script_gae(b, gamma, lam):
    nv = A.next_state_values(b["values"], b["last_value"], b["terminations"], b["truncations"], b["final_values"])
    dones = b["terminations"] | b["truncations"]
    return A.gae(b["rewards"], b["values"], nv, dones, gamma, lam).numpy()


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0), (0.0, 0.7)])
def test_gae_matches_brute_force(gamma, lam):
    b = make_batch()
    np.testing.assert_allclose(script_gae(b, gamma, lam), brute_force(b, gamma, lam), rtol=1e-10, atol=1e-10)


def test_lambda_one_is_discounted_return_minus_value():
    b, gamma = make_batch(seed=1), 0.97
    T, N = b["rewards"].shape
    returns = np.zeros((T, N))
    for n in range(N):  # discounted sum of rewards to the episode's end, plus the bootstrap there
        for t in range(T):
            total, discount = 0.0, 1.0
            for k in range(t, T):
                total += discount * b["rewards"][k, n]
                discount *= gamma
                if b["terminations"][k, n]:
                    break
                if b["truncations"][k, n]:
                    total += discount * b["final_values"][k, n]
                    break
                if k == T - 1:
                    total += discount * b["last_value"][n]
            returns[t, n] = total
    np.testing.assert_allclose(script_gae(b, gamma, 1.0), returns - b["values"].numpy(), rtol=1e-10, atol=1e-10)


def test_lambda_zero_is_the_td_residual():
    b, gamma = make_batch(seed=2), 0.9
    nv = A.next_state_values(b["values"], b["last_value"], b["terminations"], b["truncations"], b["final_values"])
    np.testing.assert_allclose(script_gae(b, gamma, 0.0), (b["rewards"] + gamma * nv - b["values"]).numpy())


def test_truncation_bootstraps_from_final_value_and_termination_does_not():
    values = torch.tensor([[1.0, 1.0], [7.0, 7.0]])  # values[1] belongs to the next episode's first state
    nv = A.next_state_values(values, torch.tensor([3.0, 3.0]), torch.tensor([[False, True], [False, False]]),
                             torch.tensor([[True, False], [False, False]]),
                             torch.tensor([[5.0, 0.0], [0.0, 0.0]]))  # fmt: skip
    assert nv.tolist() == [[5.0, 0.0], [3.0, 3.0]]


TRUNC_ID = "TruncatedCartPole-v0"
gym.register(TRUNC_ID, entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv", max_episode_steps=6)


def test_loop_bootstraps_truncations_from_the_true_final_observation(in_tmp, monkeypatch):
    """In the real loop: every 6th step of each env is a truncation, and its bootstrap value is V of the final
    observation, not of the next episode's first observation (which the env returns in its place)."""
    seen = []

    def spy(values, last_value, terminations, truncations, final_values):
        seen.append((values.clone(), terminations.clone(), truncations.clone(), final_values.clone()))
        return real(values, last_value, terminations, truncations, final_values)

    real = A.next_state_values
    monkeypatch.setattr(A, "next_state_values", spy)
    A.main(A.Args(env_id=TRUNC_ID, total_timesteps=4 * 8 * 4, num_envs=4, num_steps=8, cuda=False, progress=False,
                  eval_episodes=0))  # fmt: skip
    truncated_steps = 0
    for values, terminations, truncations, final_values in seen:
        for t, n in truncations.nonzero().tolist():
            truncated_steps += 1
            assert final_values[t, n] != 0
            if t + 1 < values.shape[0]:
                assert final_values[t, n] != values[t + 1, n]
        assert not (final_values[~truncations] != 0).any()
    assert truncated_steps >= 10


def test_atari_life_loss_is_terminal_for_learning_but_the_game_goes_on(in_tmp, monkeypatch):
    """Breakout: 5 lives per game. Terminations (for learning) outnumber finished games, which are logged
    with their whole, unclipped score."""
    terminations_seen = []

    def spy(values, last_value, terminations, truncations, final_values):
        terminations_seen.append(terminations.sum().item())
        return real(values, last_value, terminations, truncations, final_values)

    real = A.next_state_values
    monkeypatch.setattr(A, "next_state_values", spy)
    result = A.main(A.Args(env_id="ALE/Breakout-v5", total_timesteps=4 * 128 * 8, num_envs=4, num_steps=128,
                           cuda=False, progress=False, eval_episodes=1))  # fmt: skip
    games = len(result["episodic_returns"])
    assert games >= 1 and sum(terminations_seen) >= 4 * games
    logged = scalars(result["run_dir"])
    for key in ["charts/episodic_return", "losses/policy_loss", "losses/value_loss", "eval/episodic_return"]:
        assert key in logged
    assert all(r == int(r) >= 0 for r in result["episodic_returns"])  # whole Breakout scores, not clipped means


def test_checkpoint_then_resume_restores_networks_optimizer_and_step(in_tmp):
    first = A.main(A.Args(total_timesteps=4096, num_envs=4, num_steps=8, checkpoint_every=1024, cuda=False,
                          progress=False, eval_episodes=0))  # fmt: skip
    path = os.path.join(first["run_dir"], "checkpoint.pt")
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["global_step"] == first["global_step"] == 4096
    # resuming with nothing left to do saves exactly what was loaded
    same = A.main(A.Args(resume=path, total_timesteps=4096, save_model=True, cuda=False, progress=False,
                         eval_episodes=0))  # fmt: skip
    saved = torch.load(os.path.join(same["run_dir"], "model.pt"), weights_only=False)
    assert same["run_dir"] == first["run_dir"]
    for key, value in checkpoint["agent"].items():
        assert torch.equal(saved["agent"][key], value)
    # resuming with more steps continues from the step and logs into the same folder
    more = A.main(A.Args(resume=path, total_timesteps=8192, cuda=False, progress=False, eval_episodes=0))
    assert more["run_dir"] == first["run_dir"] and more["global_step"] == 8192
    assert min(more["episodic_steps"]) > 4096
    steps = [s for s, _ in scalars(first["run_dir"])["charts/SPS"]]
    assert steps[-1] == 8192 and len(steps) == len(set(steps)) == 8192 // 32


def test_checkpoint_holds_the_optimizer_state(in_tmp):
    first = A.main(A.Args(total_timesteps=2048, num_envs=4, num_steps=8, checkpoint_every=2048, cuda=False,
                          progress=False, eval_episodes=0))  # fmt: skip
    state = torch.load(os.path.join(first["run_dir"], "checkpoint.pt"), weights_only=False)["optimizer"]["state"]
    assert state and all(s["step"] == 2048 // 32 for s in state.values())


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "actor_critic_gae.py"), "--total-timesteps", "50000000",
                             "--no-cuda", "--no-progress"],
                            cwd=tmp_path, stdout=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 60
    while not list(tmp_path.glob("runs/*/events.*")) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    (checkpoint,) = tmp_path.glob("runs/*/checkpoint.pt")
    assert f"--resume {checkpoint.relative_to(tmp_path)}" in out
    assert torch.load(checkpoint, weights_only=False)["global_step"] > 0
    assert not list(tmp_path.glob("runs/*/*.tmp"))


def test_two_processes_under_torchrun_stay_identical_and_log_once(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_check.py"), str(tmp_path)]  # fmt: skip
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["updates"] for r in ranks] == [4096 // (2 * 4 * 8)] * 2
    assert all(r["max_diff"] == 0.0 for r in ranks)
    assert all(r["global_step"] == 4096 for r in ranks)
    # the process group is gone when main returns: gloo threads left running can abort the interpreter's exit
    assert not [t for r in ranks for t in r["threads"] if "gloo" in t], ranks
    (run_dir,) = tmp_path.glob("runs/*")  # one run folder, one event file: only rank 0 logs
    assert len(list(run_dir.glob("events.*"))) == 1
    assert len(scalars(str(run_dir))["charts/SPS"]) == 4096 // (2 * 4 * 8)


def test_cartpole_learns_within_a_short_budget(in_tmp):
    result = A.main(A.Args(total_timesteps=150_000, eval_episodes=0, progress=False, cuda=False))
    returns = np.array(result["episodic_returns"])
    rolling = np.convolve(returns, np.ones(20) / 20, mode="valid")
    assert rolling.max() >= 475, f"best 20-episode mean {rolling.max():.1f}"


@pytest.mark.parametrize("env_id", ["Pendulum-v1"])
def test_box_actions_train(env_id, in_tmp):
    result = A.main(A.Args(env_id=env_id, total_timesteps=4096, num_envs=4, cuda=False, progress=False,
                           eval_episodes=1, shared=True))  # fmt: skip
    logged = scalars(result["run_dir"])
    assert all(np.isfinite(v) for _, v in logged["losses/policy_loss"] + logged["losses/value_loss"])
    assert len(result["eval_returns"]) == 1 and np.isfinite(result["eval_returns"][0])
