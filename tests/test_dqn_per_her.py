"""dqn_per_her.py: the sum tree, prioritized sampling and its weights, hindsight relabelling, the bit-flipping
environment, checkpoints, and the HER result in miniature (HER solves what plain DQN cannot)."""

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import scalars

import dqn_per_her as H


# Sum tree and prioritized replay
def test_sum_tree_nodes_are_sums_of_their_leaves_after_any_updates():
    rng = np.random.default_rng(0)
    tree = H.SumTree(1000)  # 1024 leaves
    leaves = np.zeros(tree.size)
    for _ in range(200):
        idx = rng.integers(0, 1000, rng.integers(1, 50))  # with repeats
        values = rng.random(len(idx)) * 10
        tree.update(idx, values)
        leaves[idx] = values  # numpy keeps the last of repeated indices, as the tree must
    level = leaves
    for d in range(tree.depth, -1, -1):
        np.testing.assert_allclose(tree.nodes[1 << d : 2 << d], level, rtol=1e-12)
        level = level[0::2] + level[1::2]
    assert tree.total() == pytest.approx(leaves.sum())


def test_sum_tree_find_returns_the_leaf_whose_prefix_interval_holds_the_value():
    tree = H.SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 0.0, 2.0, 0.5, 1.5]))
    values = np.array([0.0, 0.999, 1.0, 2.99, 3.0, 3.49, 3.5, 4.99])
    assert tree.find(values).tolist() == [0, 0, 2, 2, 3, 3, 4, 4]  # leaf 1 (priority 0) is never found


def test_prioritized_sampling_frequencies_match_priorities_chi_square():
    replay = H.ReplayMemory(8, 2, prioritized=True, alpha=1.0, eps=0.0, seed=0)
    replay.add(np.zeros((8, 2)), np.arange(8), np.zeros(8), np.zeros(8, bool), np.zeros((8, 2)))
    priorities = np.array([1, 2, 3, 4, 0.5, 0.25, 6, 8.0])
    replay.update_priorities(np.arange(8), priorities)
    counts = np.zeros(8)
    for _ in range(2000):
        np.add.at(counts, replay.sample(32, beta=0.4)["idx"], 1)
    expected = counts.sum() * priorities / priorities.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 24.32  # the 0.999 quantile of chi-square with 7 degrees of freedom
    uniform = np.full(8, counts.sum() / 8)
    assert ((counts - uniform) ** 2 / uniform).sum() > 1000  # and far from uniform: the test can fail


def test_importance_weights_match_brute_force_and_alpha_is_applied():
    replay = H.ReplayMemory(100, 1, prioritized=True, alpha=0.6, eps=1e-6, seed=1)
    replay.add(np.zeros((60, 1)), np.zeros(60), np.zeros(60), np.zeros(60, bool), np.zeros((60, 1)))
    td = np.random.default_rng(2).normal(size=60) * 3
    replay.update_priorities(np.arange(60), td)
    p = (np.abs(td) + 1e-6) ** 0.6
    np.testing.assert_allclose(replay.tree.nodes[replay.tree.size : replay.tree.size + 60], p, rtol=1e-12)
    b = replay.sample(16, beta=0.7)
    P = p[b["idx"]] / p.sum()
    w = [(60 * P_i) ** -0.7 for P_i in P]
    np.testing.assert_allclose(b["weights"], np.array(w) / max(w), rtol=1e-5)
    assert b["weights"].max() == 1.0


def test_sampled_priorities_are_updated_and_new_transitions_get_the_largest():
    replay = H.ReplayMemory(64, 1, prioritized=True, alpha=0.6, eps=0.01, seed=0)
    replay.add(np.zeros((10, 1)), np.zeros(10), np.zeros(10), np.zeros(10, bool), np.zeros((10, 1)))
    b = replay.sample(4, beta=0.4)
    td = np.array([5.0, -0.1, 0.0, 2.0])
    replay.update_priorities(b["idx"], td)
    leaf = replay.tree.nodes[replay.tree.size :]
    last = {i: e for i, e in zip(b["idx"], td, strict=True)}  # a repeated index keeps its last error
    for i, e in last.items():
        assert leaf[i] == pytest.approx((abs(e) + 0.01) ** 0.6)
    replay.add(np.zeros((1, 1)), np.zeros(1), np.zeros(1), np.zeros(1, bool), np.zeros((1, 1)))
    assert leaf[10] == pytest.approx(max(1.0, 5.01) ** 0.6)


# Hindsight relabelling
@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_relabelled_goals_are_achieved_goals_of_the_same_episode(strategy):
    rng = np.random.default_rng(0)
    achieved = np.arange(11)[:, None] * np.ones((1, 3))  # s_0 .. s_10, each goal distinct
    t, goals = H.her_relabel(achieved, strategy, 4, rng)
    assert t.tolist() == np.repeat(np.arange(10), 4).tolist()
    later = goals[:, 0].astype(int) - 1  # the step after which each goal was achieved
    assert (later >= 0).all() and (later <= 9).all()
    if strategy == "future":
        assert (later >= t).all() and len(set(later[t == 0])) > 1
    if strategy == "final":
        assert (later == 9).all()
    if strategy == "episode":
        assert (later < t).any()


def test_replay_holds_originals_and_relabelled_copies_with_recomputed_rewards(in_tmp):
    n, k = 6, 4
    result = H.main(H.Args(n_bits=n, her_k=k, total_timesteps=300, learning_starts=2000, buffer_size=10_000,
                           batch_size=32, progress=False, eval_episodes=0))  # fmt: skip
    replay = result["replay"]
    env = H.BitFlipEnv(n)
    x, next_x = replay.x[: len(replay)], replay.next_x[: len(replay)]
    goal, achieved_next = x[:, n:], next_x[:, :n]  # BitFlip: the achieved goal is the state itself
    np.testing.assert_array_equal(replay.rewards[: len(replay)], env.compute_reward(achieved_next, goal, {}))
    np.testing.assert_array_equal(next_x[:, n:], goal)  # x and x' share their goal
    # episode by episode: T originals with the episode's own goal, then T k copies
    pos, episode_lengths = 0, np.diff([0, *result["episodic_steps"]])
    for T in episode_lengths:
        originals, copies = slice(pos, pos + T), slice(pos + T, pos + T * (k + 1))
        assert (goal[originals] == goal[pos]).all()
        states = np.concatenate([x[originals, :n], next_x[pos + T - 1 : pos + T, :n]])  # s_0 .. s_T
        for j, g in enumerate(goal[copies]):
            t = j // k
            assert any((states[t + 1 :] == g).all(1)), "a relabelled goal is a state reached at or after t + 1"
        pos += T * (k + 1)
    assert pos == len(replay) and len(episode_lengths) > 5


def test_bit_flip_environment_rewards_termination_and_truncation():
    env = gym.make("BitFlip-v0", n_bits=4)
    obs, _ = env.reset(seed=0)
    assert not (obs["observation"] == obs["desired_goal"]).all()
    diff = np.flatnonzero(obs["observation"] != obs["desired_goal"])
    for i, bit in enumerate(diff):
        obs, reward, terminated, truncated, info = env.step(int(bit))
        last = i == len(diff) - 1
        assert reward == (0.0 if last else -1.0) and terminated == last and info["is_success"] == last
    while (obs["observation"] != obs["desired_goal"]).sum() < 2:
        obs, _ = env.reset()
    for _ in range(4):  # flip bit 0 back and forth: never at the goal, cut after n = 4 steps
        _, reward, terminated, truncated, _ = env.step(0)
        assert reward == -1.0 and not terminated
    assert truncated


def test_her_on_a_non_goal_environment_is_a_clear_error(in_tmp, capsys):
    with pytest.raises(SystemExit) as e:
        H.main(H.Args(env_id="CartPole-v1", progress=False))
    assert e.value.code == 2 and "--her" in capsys.readouterr().err and not os.path.exists("runs")


def test_checkpoint_then_resume_restores_networks_optimizer_step_and_replay(in_tmp):
    args = {"n_bits": 5, "total_timesteps": 600, "learning_starts": 128, "progress": False, "eval_episodes": 0}
    first = H.main(H.Args(**args, checkpoint_every=600))
    path = os.path.join(first["run_dir"], "checkpoint.pt")
    ckpt = torch.load(path, weights_only=False)
    same = H.main(H.Args(**{**args, "resume": path}))
    assert same["global_step"] == 600 and same["run_dir"] == first["run_dir"]
    for name in ("q_network", "target_network"):
        assert all(torch.equal(same[name].state_dict()[k], v) for k, v in ckpt[name].items())
    opt = same["optimizer"].state_dict()["state"]
    assert all(torch.equal(opt[i]["exp_avg"], s["exp_avg"]) for i, s in ckpt["optimizer"]["state"].items())
    assert len(same["replay"]) == ckpt["replay"]["size"] > 0
    np.testing.assert_array_equal(same["replay"].tree.nodes, ckpt["replay"]["tree"].numpy())
    np.testing.assert_array_equal(same["replay"].x[: len(same["replay"])], ckpt["replay"]["x"].numpy())
    more = H.main(H.Args(**{**args, "resume": path, "total_timesteps": 900}))
    assert more["global_step"] == 900 and more["num_updates"] == first["num_updates"] + 300
    steps = [s for s, _ in scalars(first["run_dir"])["charts/success_rate"]]
    assert steps == sorted(steps) and steps[-1] > 600


# Learning
def success_rate(result, last=100):
    return float(np.mean(result["successes"][-last:]))


def test_her_solves_10_bits_and_plain_dqn_fails_at_20_within_the_same_budget(in_tmp):
    budget = {"total_timesteps": 3000, "progress": False, "eval_episodes": 0}
    her = H.main(H.Args(n_bits=10, **budget))
    assert success_rate(her) >= 0.9
    plain = H.main(H.Args(n_bits=20, her=False, **budget))
    assert success_rate(plain) < 0.1


def test_per_on_cartpole_trains(in_tmp):
    result = H.main(H.Args(env_id="CartPole-v1", her=False, total_timesteps=15_000, learning_starts=1000,
                           target_network_frequency=500, learning_rate=1e-3, exploration_fraction=0.2,
                           eval_episodes=5, progress=False))  # fmt: skip
    # random play scores about 22; this run's last 20 training episodes average about 220, its greedy policy 120
    assert np.mean(result["episodic_returns"][-20:]) > 100 and np.mean(result["eval_returns"]) > 60
