"""dqn_per_her.py: the sum tree, prioritized sampling and its weights, hindsight relabelling, the bit-flipping
environment, checkpoints, and the HER result in miniature (HER solves what plain DQN cannot)."""

import os
import signal
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import CLOCK_LIMIT, check_td_target, scalars

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


def test_the_loop_updates_priorities_and_passes_importance_weights_to_the_loss(in_tmp, monkeypatch):
    weights, dqn_loss = [], H.dqn_loss

    def spy(q_network, target_network, b, *rest):
        weights.append(b["weights"].copy())
        return dqn_loss(q_network, target_network, b, *rest)

    monkeypatch.setattr(H, "dqn_loss", spy)
    args = H.Args(n_bits=5, per=True, total_timesteps=600, learning_starts=128, progress=False, eval_episodes=0)
    result = H.main(args)
    replay = result["replay"]
    leaves = replay.tree.nodes[replay.tree.size : replay.tree.size + len(replay)]
    assert len(np.unique(leaves)) > len(leaves) / 2 and replay.max_priority > 1.0  # TD errors, not 1 each
    assert len(weights) == result["num_updates"] > 400
    assert np.mean([w.min() < 0.99 for w in weights]) > 0.9  # beta < 1 and unequal priorities: unequal weights


# Targets and losses
@pytest.mark.parametrize("double_q", [False, True])
def test_td_targets_match_brute_force(double_q):
    check_td_target(H.td_target, double_q)


def test_target_bounds_hold_every_discounted_return_of_the_rewards_seen():
    assert H.target_bounds(-1.0, 0.0, 0.98) == pytest.approx((-50.0, 0.0))  # BitFlip-v0
    assert H.target_bounds(0.0, 1.0, 0.9) == pytest.approx((0.0, 10.0))
    assert H.target_bounds(0.5, 2.0, 0.5) == pytest.approx((0.0, 4.0))  # an episode may end at once: 0 is in
    assert H.target_bounds(-1.0, 0.0, 1.0) == (-float("inf"), 0.0)
    assert H.target_bounds(0.0, 1.0, 1.0) == (0.0, float("inf"))
    rng = np.random.default_rng(0)
    for r_min, r_max in [(-1.0, 0.0), (0.0, 1.0), (-2.0, 3.0), (0.5, 2.0), (-3.0, -1.0)]:
        low, high = H.target_bounds(r_min, r_max, 0.8)
        episodes = [rng.uniform(r_min, r_max, rng.integers(0, 60)) for _ in range(300)]
        episodes += [np.zeros(0), np.full(80, r_min), np.full(80, r_max)]  # the extremes: ended at once, or never
        returns = [float(np.sum(rewards * 0.8 ** np.arange(len(rewards)))) for rewards in episodes]
        assert low - 1e-9 <= min(returns) and max(returns) <= high + 1e-9
        assert (min(returns), max(returns)) == pytest.approx((low, high), abs=1e-6)  # and no wider than needed


def linear_q(rng, in_dim: int, n_actions: int) -> torch.nn.Linear:
    """A fixed network Q(x) = W x + c with known weights."""
    net = torch.nn.Linear(in_dim, n_actions)
    with torch.no_grad():
        net.weight.copy_(torch.as_tensor(rng.normal(size=(n_actions, in_dim)) * 2))
        net.bias.copy_(torch.as_tensor(rng.normal(size=n_actions)))
    return net


@pytest.mark.parametrize("double_q", [False, True])
@pytest.mark.parametrize("bounds", [None, (-2.0, 0.5)])
def test_dqn_loss_is_the_weighted_mean_huber_error_against_brute_force_targets(double_q, bounds):
    rng = np.random.default_rng(0)
    q_network, target_network = linear_q(rng, 2, 3), linear_q(rng, 2, 3)
    B, gamma = 32, 0.9
    x, next_x = rng.normal(size=(B, 2)).astype(np.float32), rng.normal(size=(B, 2)).astype(np.float32)
    rewards, weights = rng.choice([-1.0, 0.0, 1.0], B).astype(np.float32), rng.uniform(0.1, 1, B).astype(np.float32)
    b = {"x": x, "next_x": next_x, "actions": rng.integers(0, 3, B), "rewards": rewards}
    b |= {"terminated": rng.random(B) < 0.3, "weights": weights}  # importance weights far from uniform
    td_loss, q_taken, td_errors = H.dqn_loss(q_network, target_network, b, gamma, double_q, bounds)

    def q(net, x):  # the network by hand, as numpy: W x + c
        return net.weight.detach().numpy() @ x + net.bias.detach().numpy()

    losses, errors, taken, clipped = [], [], [], 0
    for i in range(B):
        picker = q_network if double_q else target_network
        a_next = int(np.argmax(q(picker, b["next_x"][i])))
        y = b["rewards"][i] + (0.0 if b["terminated"][i] else gamma * q(target_network, b["next_x"][i])[a_next])
        if bounds is not None:
            clipped += not bounds[0] <= y <= bounds[1]
            y = min(max(y, bounds[0]), bounds[1])
        taken.append(q(q_network, b["x"][i])[b["actions"][i]])
        delta = y - taken[-1]
        errors.append(delta)
        losses.append(b["weights"][i] * (0.5 * delta**2 if abs(delta) < 1 else abs(delta) - 0.5))
    assert td_loss.item() == pytest.approx(np.mean(losses), rel=1e-5)
    np.testing.assert_allclose(td_errors.numpy(), errors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_taken.detach().numpy(), taken, rtol=1e-5, atol=1e-6)
    # the batch exercises every part: both Huber branches, clipped targets, and weights and double_q that matter
    assert min(map(abs, errors)) < 1 < max(map(abs, errors)) and (bounds is None or 0 < clipped < B)
    unweighted = H.dqn_loss(q_network, target_network, dict(b, weights=np.ones(B, np.float32)), gamma, double_q, bounds)
    assert unweighted[0].item() != pytest.approx(td_loss.item(), rel=1e-3)
    assert not torch.allclose(H.dqn_loss(q_network, target_network, b, gamma, not double_q, bounds)[2], td_errors)


# Hindsight relabelling
@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_relabelled_goal_positions_stay_in_the_episode_and_wrap_around_the_ring(strategy):
    rng = np.random.default_rng(0)
    capacity, start, end = 16, 12, 5  # an episode at ring positions 12, 13, 14, 15, 0, 1, ..., 5 (10 steps)
    episode = [(start + i) % capacity for i in range(10)]
    t = np.repeat(episode, 200)
    later = H.her_goal_positions(t, np.full(len(t), start), np.full(len(t), end), strategy, capacity, rng)
    step_of = {pos: i for i, pos in enumerate(episode)}
    assert set(later.tolist()) <= set(episode)  # never another episode's transition
    t_step, later_step = np.vectorize(step_of.get)(t), np.vectorize(step_of.get)(later)
    if strategy == "future":  # the goal achieved after a step t' in [t, T): every such t' drawn
        assert (later_step >= t_step).all()
        assert all(set(later_step[t_step == i].tolist()) == set(range(i, 10)) for i in range(10))
    if strategy == "final":
        assert (later == end).all()
    if strategy == "episode":
        assert set(later_step.tolist()) == set(range(10)) and (later_step < t_step).any()


def fill_with_episodes(replay: H.ReplayMemory, lengths, n: int, rng) -> list:
    """Whole bit-flipping-like episodes with distinct goals; returns each transition's (episode, step)."""
    owner = []
    for e, T in enumerate(lengths):
        states = rng.integers(0, 2, (T + 1, n)).astype(np.float32)
        goal = np.full((T, n), 2.0 + e, np.float32)  # marks the episode: never an achieved goal
        replay.add(
            np.concatenate([states[:-1], goal], 1),
            rng.integers(0, n, T),
            -np.ones(T),
            np.zeros(T, bool),
            np.concatenate([states[1:], goal], 1),
            states[1:],
        )
        owner += [(e, i) for i in range(T)]
    return owner


def test_sampled_batches_relabel_k_of_k_plus_1_goals_with_their_own_episodes_later_goals(in_tmp):
    n, k = 6, 4
    flags = {"batch_size": 32, "progress": False, "eval_episodes": 0}  # learning from step 399 on: the replay fills
    result = H.main(H.Args(n_bits=n, her_k=k, total_timesteps=400, learning_starts=399, buffer_size=10_000, **flags))
    replay, env = result["replay"], H.BitFlipEnv(n)
    stored = result["episodic_steps"][-1]  # one transition per step of each finished episode, as it happened
    assert len(replay) == stored > 350
    x, next_x = replay.x[:stored], replay.next_x[:stored]
    np.testing.assert_array_equal(replay.rewards[:stored], env.compute_reward(next_x[:, :n], x[:, n:], {}))
    episode_ends = np.array(result["episodic_steps"]) - 1  # BitFlip: the achieved goal is the state itself
    relabelled = 0
    for _ in range(50):
        b = replay.sample(256, beta=0.4)
        np.testing.assert_array_equal(b["next_x"][:, n:], b["x"][:, n:])  # x and x' share their goal
        np.testing.assert_array_equal(b["rewards"], env.compute_reward(b["next_x"][:, :n], b["x"][:, n:], {}))
        np.testing.assert_array_equal(b["terminated"], b["rewards"] == 0)  # BitFlip ends at its goal
        for t, goal, new in zip(b["idx"], b["x"][:, n:], b["relabelled"], strict=True):
            end = episode_ends[np.searchsorted(episode_ends, t)]
            if new:  # a state reached after a step t' in [t, end] of the same episode
                assert any((replay.next_x[t : end + 1, :n] == goal).all(1))
            else:
                np.testing.assert_array_equal(goal, x[t, n:])
        relabelled += b["relabelled"].sum()
    assert abs(relabelled / (50 * 256) - k / (k + 1)) < 0.02


def test_relabelling_never_crosses_into_the_episode_that_overwrote_part_of_its_own(in_tmp):
    rng = np.random.default_rng(0)
    replay = H.ReplayMemory(20, 8, prioritized=False, alpha=0.6, eps=1e-6, seed=0, goal_dim=4)
    replay.hindsight = ("episode", 1_000_000, H.BitFlipEnv(4).compute_reward, None)
    owner = fill_with_episodes(replay, [7, 9, 8], 4, rng)  # 24 steps in a ring of 20: the 3rd wraps around
    owner = owner[20:] + owner[4:20]  # what each ring position holds now: episode 0 lost its first 4 steps
    assert replay.episode_start[4] == 4 and replay.episode_end[4] == 6
    for _ in range(200):
        b = replay.sample(64, beta=1.0)
        for t, goal in zip(b["idx"], b["x"][:, 4:], strict=True):
            same = [p for p in range(20) if owner[p][0] == owner[t][0]]
            assert any((replay.next_achieved[same] == goal).all(1))


def test_replay_tracks_the_smallest_and_largest_reward_stored_or_relabelled_and_keeps_them_on_resume():
    env = H.BitFlipEnv(4)
    replay = H.ReplayMemory(20, 8, prioritized=False, alpha=0.6, eps=1e-6, seed=0, goal_dim=4)
    replay.hindsight = ("future", 4, env.compute_reward, env.compute_terminated)
    fill_with_episodes(replay, [7, 9], 4, np.random.default_rng(0))  # every stored reward is -1
    assert (replay.r_min, replay.r_max) == (-1.0, -1.0)
    replay.sample(64, beta=1.0)  # relabelled goals reached: reward 0
    assert (replay.r_min, replay.r_max) == (-1.0, 0.0)
    replay.add(np.zeros((1, 8)), [0], [2.5], [False], np.zeros((1, 8)), np.zeros((1, 4)))
    resumed = H.ReplayMemory(20, 8, prioritized=False, alpha=0.6, eps=1e-6, seed=1, goal_dim=4)
    resumed.load_state_dict(replay.state_dict())
    assert (resumed.r_min, resumed.r_max) == (-1.0, 2.5)


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


def test_fixed_goal_bit_flip_always_aims_at_all_ones_and_takes_n_bits():
    env = H.make_env("BitFlipFixedGoal-v0", n_bits=3)  # 1 start in 8 is the goal itself: it must be redrawn
    goals, starts = set(), set()
    obs, _ = env.reset(seed=0)
    for _ in range(200):
        goals.add(tuple(obs["desired_goal"]))
        starts.add(tuple(obs["observation"]))
        obs, _ = env.reset()
    assert goals == {(1.0, 1.0, 1.0)} and len(starts) == 7 and (1.0, 1.0, 1.0) not in starts
    random_goals = H.make_env("BitFlip-v0", n_bits=3)
    random_goals.reset(seed=0)
    assert len({tuple(random_goals.reset()[0]["desired_goal"]) for _ in range(200)}) == 8


class LineGoalEnv(gym.Env):
    """A goal environment unlike bit flipping: a point on a line, observation (position, time left), a 1-D
    goal, reward 0 within 0.5 of it, no end at the goal (no compute_terminated: the stored flags stay), 8 steps."""

    def __init__(self, render_mode=None):
        self.observation_space = gym.spaces.Dict(
            {
                "observation": gym.spaces.Box(-9.0, 9.0, (2,)),
                "achieved_goal": gym.spaces.Box(-9.0, 9.0, (1,)),
                "desired_goal": gym.spaces.Box(-9.0, 9.0, (1,)),
            }
        )
        self.action_space = gym.spaces.Discrete(3)  # left, stay, right

    def _obs(self):
        position = np.array([self.x], np.float32)
        return {
            "observation": np.array([self.x, 8 - self.t], np.float32),
            "achieved_goal": position,
            "desired_goal": np.array([self.goal], np.float32),
        }

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t, self.goal = 0.0, 0, float(self.np_random.choice([-4.0, 4.0]))
        return self._obs(), {}

    def step(self, action):
        self.x, self.t = self.x + float(action) - 1.0, self.t + 1
        reward = float(self.compute_reward(np.array([self.x]), np.array([self.goal]), {}))
        return self._obs(), reward, False, self.t >= 8, {"is_success": reward == 0.0}

    def compute_reward(self, achieved_goal, desired_goal, info):
        return -(np.abs(achieved_goal - desired_goal)[..., 0] > 0.5).astype(np.float32)


def test_her_runs_on_another_goal_environment_with_its_own_reward_and_no_end_at_the_goal(in_tmp):
    if "LineGoal-v0" not in gym.registry:
        gym.register("LineGoal-v0", entry_point=LineGoalEnv)
    result = H.main(
        H.Args(
            env_id="LineGoal-v0",
            total_timesteps=800,
            learning_starts=128,
            batch_size=64,
            progress=False,
            eval_episodes=2,
        )
    )
    replay, env = result["replay"], LineGoalEnv()
    assert replay.x.shape[1] == 3 and len(result["successes"]) == 100  # [position, time left, goal]; 8-step episodes
    b = replay.sample(512, beta=0.4)
    assert 0.7 < b["relabelled"].mean() < 0.9  # k / (k + 1) = 0.8
    np.testing.assert_array_equal(b["rewards"], env.compute_reward(replay.next_achieved[b["idx"]], b["x"][:, 2:], {}))
    assert (b["rewards"] == 0).any() and not b["terminated"].any()  # relabelled successes, yet no episode ends there
    assert len(result["eval_returns"]) == 2


class SilentLineGoalEnv(LineGoalEnv):
    """LineGoalEnv with an info that says nothing of success (no "is_success")."""

    def step(self, action):
        return *super().step(action)[:4], {}


def test_a_goal_environment_that_reports_no_success_trains_and_counts_none(in_tmp, capsys):
    """No "is_success" in the info: episodes are neither successes nor failures, in training and evaluation."""
    if "SilentLineGoal-v0" not in gym.registry:
        gym.register("SilentLineGoal-v0", entry_point=SilentLineGoalEnv)
    flags = {"total_timesteps": 200, "learning_starts": 128, "batch_size": 32, "hidden_size": 16, "eval_episodes": 2}
    result = H.main(H.Args(env_id="SilentLineGoal-v0", progress=False, **flags))
    assert len(result["episodic_returns"]) == 25 and result["successes"] == [] and result["eval_successes"] is None
    assert not any("success" in tag for tag in scalars(result["run_dir"])) and "success" not in capsys.readouterr().out


class ReachGoalEnv(gym.Env):
    """A goal environment with rewards of the other sign: a point between walls at -5 and 5, a goal at -4 or 4,
    reward 1 on reaching it (within 0.5), else 0, and reaching it ends the episode (compute_terminated); 8 steps.
    A random policy succeeds in about 1 episode in 10; walking one way, in 1 in 2."""

    def __init__(self, render_mode=None):
        box = gym.spaces.Box(-5.0, 5.0, (1,))
        self.observation_space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = gym.spaces.Discrete(3)  # left, stay, right

    def _obs(self):
        position, goal = np.array([self.x], np.float32), np.array([self.goal], np.float32)
        return {"observation": position, "achieved_goal": position.copy(), "desired_goal": goal}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t, self.goal = 0.0, 0, float(self.np_random.choice([-4.0, 4.0]))
        return self._obs(), {}

    def step(self, action):
        self.x, self.t = min(max(self.x + float(action) - 1.0, -5.0), 5.0), self.t + 1
        success = bool(self.compute_terminated(np.array([self.x]), np.array([self.goal]), {}))
        return self._obs(), float(success), success, self.t >= 8 and not success, {"is_success": success}

    def compute_reward(self, achieved_goal, desired_goal, info):
        return self.compute_terminated(achieved_goal, desired_goal, info).astype(np.float32)

    def compute_terminated(self, achieved_goal, desired_goal, info):
        return np.abs(achieved_goal - desired_goal)[..., 0] <= 0.5


def test_her_learns_a_goal_environment_with_positive_rewards_that_ends_at_the_goal(in_tmp, monkeypatch):
    if "ReachGoal-v0" not in gym.registry:
        gym.register("ReachGoal-v0", entry_point=ReachGoalEnv)
    bounds, dqn_loss = [], H.dqn_loss

    def spy(q_network, target_network, b, gamma, double_q, clip):
        bounds.append(clip)
        return dqn_loss(q_network, target_network, b, gamma, double_q, clip)

    monkeypatch.setattr(H, "dqn_loss", spy)
    args = {"gamma": 0.9, "total_timesteps": 1500, "learning_starts": 128, "batch_size": 64, "eval_episodes": 20}
    result = H.main(H.Args(env_id="ReachGoal-v0", progress=False, **args))
    replay, env = result["replay"], ReachGoalEnv()
    assert (replay.r_min, replay.r_max) == (0.0, 1.0) and bounds[-1] == pytest.approx((0.0, 10.0))  # 1 / (1 - gamma)
    b = replay.sample(512, beta=0.4)
    achieved, goals = replay.next_achieved[b["idx"]], b["x"][:, 1:]
    np.testing.assert_array_equal(b["rewards"], env.compute_reward(achieved, goals, {}))
    np.testing.assert_array_equal(b["terminated"], env.compute_terminated(achieved, goals, {}))
    assert (b["terminated"] & ~replay.terminated[b["idx"]]).any()  # relabelled successes end there, as stored did not
    # learned: far above a random policy (about 0.1) and one that always walks the same way (0.5)
    assert success_rate(result, last=50) >= 0.8 and np.mean(result["eval_successes"]) >= 0.9


def test_her_on_a_non_goal_environment_is_a_clear_error(in_tmp, capsys):
    with pytest.raises(SystemExit) as e:
        H.main(H.Args(env_id="CartPole-v1", progress=False))
    assert e.value.code == 2 and "--her" in capsys.readouterr().err and not os.path.exists("runs")


def test_checkpoint_then_resume_restores_networks_optimizer_step_and_replay(in_tmp, monkeypatch):
    args = {
        "n_bits": 5,
        "total_timesteps": 600,
        "learning_starts": 128,
        "per": True,
        "train_frequency": 2,
        "progress": False,
        "eval_episodes": 0,
    }
    first = H.main(H.Args(**args, checkpoint_every=600))
    path = os.path.join(first["run_dir"], "checkpoint.pt")
    ckpt = torch.load(path, weights_only=False)
    # one step more (no gradient step, no target update, the episode not over): all as saved
    monkeypatch.setattr(sys, "argv", ["dqn_per_her.py", "--resume", path, "--total-timesteps", "601"])
    same = H.main(H.Args(**{**args, "resume": path, "total_timesteps": 601}))
    assert same["global_step"] == 601 and same["run_dir"] == first["run_dir"]
    for name in ("q_network", "target_network"):
        assert all(torch.equal(same[name].state_dict()[k], v) for k, v in ckpt[name].items())
    opt = same["optimizer"].state_dict()["state"]
    assert all(torch.equal(opt[i]["exp_avg"], s["exp_avg"]) for i, s in ckpt["optimizer"]["state"].items())
    assert len(same["replay"]) == ckpt["replay"]["size"] > 0
    np.testing.assert_array_equal(same["replay"].tree.nodes, ckpt["replay"]["tree"].numpy())
    for k in ("x", "next_achieved", "episode_start", "episode_end"):
        np.testing.assert_array_equal(getattr(same["replay"], k)[: len(same["replay"])], ckpt["replay"][k].numpy())
    monkeypatch.setattr(sys, "argv", ["dqn_per_her.py", "--resume", path, "--total-timesteps", "900"])
    more = H.main(H.Args(**{**args, "resume": path, "total_timesteps": 900}))
    assert more["global_step"] == 900 and more["num_updates"] == first["num_updates"] + 150
    steps = [s for s, _ in scalars(first["run_dir"])["charts/success_rate"]]
    assert steps == sorted(steps) and steps[-1] > 600


# Schedules, by their effect on the loop
class DialEnv(gym.Env):
    """100 actions, one observation [0] and a reward that depends on the action only. Trained with a learning rate
    of 1e-12, the network keeps its first greedy action, so an action taken at another one was an epsilon step
    (99 times in 100). Records every action; raises SIGTERM at step stop_at, as a user stopping the run would."""

    actions, stop_at = [], None
    observation_space, action_space = gym.spaces.Box(-1.0, 1.0, (1,)), gym.spaces.Discrete(100)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        DialEnv.actions.append(int(action))
        if len(DialEnv.actions) == DialEnv.stop_at:
            signal.raise_signal(signal.SIGTERM)  # the script's handler: finish the step, checkpoint, stop
        return np.zeros(1, np.float32), (int(action) % 10) / 10, False, False, {}


@pytest.fixture(scope="module")
def dial_run(tmp_path_factory):
    """A 2000-step run with PER, stopped at step 600, resumed and extended to 3000 steps: the schedules stay
    those of 2000 steps (epsilon 1 -> 0.1 over steps 0-1000, beta 0.4 -> 1 over 0-2000). Returns the actions, the
    greedy action, and (step, beta fitted to the importance weights each loss received) for each update."""
    if "Dial-v0" not in gym.registry:
        gym.register("Dial-v0", entry_point=DialEnv, max_episode_steps=25)
    DialEnv.actions, DialEnv.stop_at, betas, replays = [], 600, [], []
    dqn_loss = H.dqn_loss

    def spy(q_network, target_network, b, *rest):  # log w_i = -beta log(P_i / P_min): fit beta
        leaves = replays[-1].tree.nodes[replays[-1].tree.size + b["idx"]]
        spread = np.log(leaves / leaves.min())
        if spread.max() > 0.1:  # unequal priorities: the weights tell beta
            betas.append((len(DialEnv.actions), -np.log(b["weights"]) @ spread / (spread @ spread)))
        return dqn_loss(q_network, target_network, b, *rest)

    class Replay(H.ReplayMemory):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            replays.append(self)

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(tmp_path_factory.mktemp("dial"))
        monkeypatch.setattr(H, "dqn_loss", spy)
        monkeypatch.setattr(H, "ReplayMemory", Replay)
        flags = {"learning_rate": 1e-12, "end_e": 0.1, "learning_starts": 200, "train_frequency": 2, "batch_size": 32}
        flags |= {
            "env_id": "Dial-v0",
            "her": False,
            "per": True,
            "hidden_size": 16,
            "progress": False,
            "eval_episodes": 0,
        }
        try:
            first = H.main(H.Args(total_timesteps=2000, **flags))
        finally:
            signal.signal(signal.SIGINT, handlers[0])
            signal.signal(signal.SIGTERM, handlers[1])
        assert first["signal"] == signal.SIGTERM and first["global_step"] == 600
        path = os.path.join(first["run_dir"], "checkpoint.pt")
        monkeypatch.setattr(sys, "argv", ["dqn_per_her.py", "--resume", path, "--total-timesteps", "3000"])
        resumed = H.main(H.Args(resume=path, total_timesteps=3000, progress=False, eval_episodes=0))
    assert resumed["global_step"] == len(DialEnv.actions) == 3000
    greedy = int(resumed["q_network"](torch.zeros(1, 1)).argmax())
    return np.array(DialEnv.actions), greedy, np.array(betas)


def test_epsilon_decays_over_its_fraction_of_the_first_length_through_a_stop_and_an_extending_resume(dial_run):
    actions, greedy, _ = dial_run
    step = np.arange(len(actions))  # action j is taken at global_step j
    epsilon = np.interp(step, [0, 1000], [1.0, 0.1])  # 0.5 of the run's first length, 2000, then 0.1
    for window in np.split(np.arange(3000), 15):  # 200 steps each
        want = epsilon[window].mean() * 0.99  # a random action is the greedy one 1 time in 100
        got = (actions[window] != greedy).mean()
        assert abs(got - want) < 4 * np.sqrt(want * (1 - want) / len(window)), (window[0], got, want)


def test_per_beta_anneals_over_the_first_length_through_a_stop_and_an_extending_resume(dial_run):
    _, _, betas = dial_run
    steps, fitted = betas[:, 0], betas[:, 1]
    assert (steps < 600).sum() > 100 and (steps > 600).sum() > 100 and (steps > 2000).sum() > 100
    np.testing.assert_allclose(fitted, 0.4 + 0.6 * np.minimum(steps / 2000, 1.0), atol=1e-3)


# Learning
def success_rate(result, last=100):
    return float(np.mean(result["successes"][-last:]))


def test_her_solves_10_bits_where_plain_dqn_fails_and_plain_dqn_solves_3_bits(in_tmp):
    budget = {"total_timesteps": 3000, "progress": False, "eval_episodes": 0}
    her = H.main(H.Args(n_bits=10, **budget))
    assert success_rate(her) >= 0.9
    plain = H.main(H.Args(n_bits=10, her=False, **budget))
    assert success_rate(plain) < 0.1
    # plain DQN works where rewards come often enough: 3 bits, where a random policy succeeds 1 time in 3
    small = H.main(H.Args(n_bits=3, her=False, **{**budget, "total_timesteps": 1000, "eval_episodes": 100}))
    assert success_rate(small) >= 0.9 and np.mean(small["eval_successes"]) >= 0.98  # greedy: every episode


def test_per_on_cartpole_trains(in_tmp):
    result = H.main(
        H.Args(
            env_id="CartPole-v1",
            her=False,
            per=True,
            total_timesteps=15_000,
            learning_starts=1000,
            target_network_frequency=500,
            learning_rate=1e-3,
            exploration_fraction=0.2,
            eval_episodes=5,
            progress=False,
        )
    )
    # random play scores about 22; this run's last 20 training episodes average about 220, its greedy policy 120
    assert np.mean(result["episodic_returns"][-20:]) > 100 and np.mean(result["eval_returns"]) > 60


@pytest.mark.parametrize("env_id", ["ClockTruncated-v0", "ClockEndsAtLimit-v0"])
def test_plain_replay_stores_the_true_final_observation_and_the_termination_flag(env_id, in_tmp):
    """--no-her on Clock (tests/conftest.py): an episode's last transition leads to its true final observation
    [5] (the environment hands back the next episode's [0] in its place), terminated only where the environment
    terminated: a time limit is bootstrapped from [5], a termination is not bootstrapped at all."""
    result = H.main(
        H.Args(
            env_id=env_id,
            her=False,
            num_envs=2,
            total_timesteps=60,
            learning_starts=40,
            batch_size=8,
            progress=False,
            eval_episodes=0,
        )
    )
    replay = result["replay"]
    x, next_x, terminated = (
        replay.x[: len(replay), 0],
        replay.next_x[: len(replay), 0],
        replay.terminated[: len(replay)],
    )
    assert len(replay) == 60
    np.testing.assert_array_equal(next_x, x + 1)  # every transition, the last of each episode included
    np.testing.assert_array_equal(terminated, (next_x == CLOCK_LIMIT) & (env_id == "ClockEndsAtLimit-v0"))
