"""dqn_atari.py: each preprocessing wrapper, the frame replay against the environment's own stacks, TD targets
against brute force, checkpoint and resume, and learning a pixel task through the real loop."""

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ROOT, brute_force_targets, check_td_target, scalars

import dqn_atari as D


class Frames(gym.Env):
    """A stand-in for the emulator: (84, 84) frames filled with the step count, a life lost every
    `life_every` steps, game over after `lives` lives or a truncation after `limit` steps; reward `reward`."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, life_every=7, lives=3, limit=1000, reward=3.0, log=None):
        self.observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)
        self.action_space = gym.spaces.Discrete(4)
        self.life_every, self.max_lives, self.limit, self.reward, self.log = life_every, lives, limit, reward, log

    def frame(self):
        return np.full((84, 84), (self.t + 100 * self.episode) % 256, np.uint8)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.episode = getattr(self, "episode", -1) + 1
        self.t, self.lives = 0, self.max_lives
        return self.frame(), {"lives": self.lives}

    def step(self, action):
        if self.log is not None:
            self.log.append(int(action))
        self.t += 1
        if self.t % self.life_every == 0:
            self.lives -= 1
        return self.frame(), self.reward, self.lives == 0, self.t >= self.limit, {"lives": self.lives}


def stacked(env):
    return gym.wrappers.FrameStackObservation(D.LifeLoss(env, fire=False), 4, padding_type="zero")


# Wrappers
def test_noop_reset_takes_between_1_and_30_noops():
    log = []
    env = D.NoopReset(Frames(life_every=10**6, log=log))
    counts = []
    env.reset(seed=0)
    for _ in range(300):
        log.clear()
        env.reset()
        counts.append(len(log))
        assert set(log) <= {0}
    assert min(counts) == 1 and max(counts) == 30 and 13 < np.mean(counts) < 18


def test_max_and_skip_repeats_sums_and_maxes_the_last_two_frames():
    class Flicker(Frames):
        def frame(self):  # a sprite that is drawn on odd frames only, at a place that moves
            f = np.zeros((84, 84), np.uint8)
            if self.t % 2:
                f[self.t, self.t] = 200
            f[0, 0] = self.t
            return f

    log = []
    env = D.MaxAndSkip(Flicker(life_every=10**6, log=log))
    env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(2)
    assert log == [2, 2, 2, 2] and reward == 12.0 and not (terminated or truncated)
    expected = np.zeros((84, 84), np.uint8)
    expected[3, 3], expected[0, 0] = 200, 4  # the max of frames 3 and 4: the sprite of 3, the counter of 4
    np.testing.assert_array_equal(obs, expected)
    # an episode that ends inside the repeat stops there
    env = D.MaxAndSkip(Frames(life_every=1, lives=2, log=log))
    env.reset(seed=0)
    log.clear()
    _, reward, terminated, _, _ = env.step(1)
    assert log == [1, 1] and reward == 6.0 and terminated


def test_fire_on_start_presses_fire_at_reset_and_after_each_lost_life_never_after_game_over():
    log = []
    env = D.LifeLoss(Frames(life_every=7, lives=3, reward=3.0, log=log), fire=True)
    env.reset(seed=0)
    assert log == [1]
    steps = []
    for _ in range(18):
        obs, reward, terminated, truncated, info = env.step(2)
        steps.append((reward, info["life_lost"], info["lives"], terminated))
    # frames 7 and 14 lose a life: FIRE follows in the same agent step; frame 21 ends the game: no FIRE
    assert log == [1, *[2] * 6, 1, *[2] * 6, 1, *[2] * 6]
    expected = []  # (reward, life_lost, lives, terminated); the FIRE step's reward of 3 is added to the loss's
    for lives in (3, 2, 1):
        expected += [(3.0, False, lives, False)] * 5
        expected.append((6.0, True, lives - 1, False) if lives > 1 else (3.0, False, 0, True))
    assert steps == expected
    assert obs[0, 0] == 21 and not truncated
    # the end of the game in the FIRE step itself is reported: a truncation, and a game over
    env = D.LifeLoss(Frames(life_every=7, limit=8), fire=True)
    env.reset(seed=0)
    for _ in range(6):
        _, reward, terminated, truncated, _ = env.step(0)
    assert truncated and not terminated and reward == 6.0
    env = D.LifeLoss(Frames(life_every=1, lives=3), fire=True)
    env.reset(seed=0)  # the FIRE at reset already cost a life
    _, reward, terminated, truncated, info = env.step(0)
    assert terminated and not truncated and reward == 6.0 and info["lives"] == 0 and not info["life_lost"]


def test_fire_is_pressed_in_every_game_whose_action_set_has_it():
    """Breakout waits for FIRE, Pong serves without it: both have FIRE, both get it; Freeway has none."""
    for env_id, fire in [("BreakoutNoFrameskip-v4", True), ("ALE/Pong-v5", True), ("ALE/Freeway-v5", False)]:
        chain, env = [], D.make_env(env_id, False)
        while hasattr(env, "env"):
            chain.append(env)
            env = env.env
        (life_loss,) = [w for w in chain if isinstance(w, D.LifeLoss)]
        assert life_loss.fire == fire and any(isinstance(w, D.NoopReset) for w in chain), env_id


def test_real_breakout_ends_for_a_policy_that_never_fires():
    """Without FIRE after a lost life the ball never comes back: NOOP only would play until the time limit
    (27,000 agent steps). With it, the ball is missed 5 times and the game is over in about 120 steps."""
    env = D.make_env("BreakoutNoFrameskip-v4", False)
    env.reset(seed=0)
    lost = 0
    for n in range(1, 301):
        _, _, terminated, truncated, info = env.step(0)
        lost += info["life_lost"]
        if terminated or truncated:
            break
    assert terminated and not truncated and lost == 4, (n, lost)  # 5 lives


def test_life_loss_is_reported_without_ending_or_resetting_the_game():
    env = D.LifeLoss(Frames(life_every=3, lives=2), fire=False)
    _, info = env.reset(seed=0)
    assert info["life_lost"] is False
    flags = []
    for _ in range(6):
        obs, _, terminated, _truncated, info = env.step(0)
        flags.append((info["life_lost"], terminated))
    # step 3 loses a life and the game goes on (frame 4 follows frame 3); step 6 loses the last: game over
    assert flags == [(False, False)] * 2 + [(True, False)] + [(False, False)] * 2 + [(False, True)]
    assert obs[0, 0] == 6


def test_real_game_life_loss_and_stack_shape():
    env = D.make_env("BreakoutNoFrameskip-v4", False)
    obs, info = env.reset(seed=3)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and not obs[:3].any() and obs[3].any()
    lives = info["lives"]
    for _ in range(2000):
        obs, _, terminated, _truncated, info = env.step(env.action_space.sample())
        if info["life_lost"]:
            assert info["lives"] == lives - 1 and not terminated
            break
    else:
        pytest.fail("no life lost in 2000 random steps")


def test_area_resize_averages_the_cells_each_pixel_covers():
    rows = D.area_matrix(210, 84)
    np.testing.assert_allclose(rows.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(rows[0, :3], [0.4, 0.4, 0.2], rtol=1e-6)  # 2.5 input rows per output row
    env = D.make_env("ALE/Pong-v5", False).env  # the Resize84 wrapper
    assert isinstance(env, D.Resize84)
    np.testing.assert_array_equal(env.observation(np.full((210, 160), 77, np.uint8)), np.full((84, 84), 77))
    frame = np.random.default_rng(0).integers(0, 256, (210, 160)).astype(np.uint8)
    small = env.observation(frame)
    assert small[0, 0] == round(frame[:3, :2].astype(float) @ [1, 0.905] @ [0.4, 0.4, 0.2] / 1.905)


def test_real_game_plays_1_to_30_noop_frames_at_reset_and_4_frames_a_step():
    """The emulator's own frame counter: a reset plays 1 to 30 no-op frames, then FIRE (one agent step); each
    agent step is 4 frames."""
    env = D.make_env("BreakoutNoFrameskip-v4", False)
    ale, noops = env.unwrapped.ale, []
    env.reset(seed=0)
    for _ in range(60):
        env.reset()
        noops.append(ale.getEpisodeFrameNumber() - 4)
    assert min(noops) >= 1 and max(noops) <= 30 and len(set(noops)) >= 15, sorted(noops)
    start = ale.getEpisodeFrameNumber()
    for _ in range(10):
        assert not env.step(3)[4]["life_lost"]
    assert ale.getEpisodeFrameNumber() == start + 40


def test_sticky_actions_as_the_emulator_plays_them():
    """The same 30 agent steps (RIGHT, LEFT, ...) from the same emulator state, played twice: the same frames
    without sticky actions; with them (always with a v5 id, with --sticky-actions for a NoFrameskip-v4 id) the
    previous action sometimes goes on for a frame, and the paddle ends elsewhere."""
    for env_id, sticky, differ in [
        ("BreakoutNoFrameskip-v4", False, False),
        ("BreakoutNoFrameskip-v4", True, True),
        ("ALE/Breakout-v5", False, True),
    ]:
        env = D.make_env(env_id, sticky)
        env.reset(seed=0)
        ale = env.unwrapped.ale
        state, plays = ale.cloneState(), []
        for _ in range(2):
            ale.restoreState(state)  # the emulator, not its random stream: sticky draws go on
            plays.append(np.array([env.step(2 + t % 2)[0][-1] for t in range(30)]))
        assert (plays[0] != plays[1]).any() == differ, (env_id, sticky)


# Replay
def fake_vector_env(num_envs, rng):
    """Episodes of random lengths, some ending in game over, some in truncation, with lives lost inside."""
    fns = [
        lambda i=i: stacked(
            Frames(life_every=int(rng.integers(2, 6)), lives=int(rng.integers(1, 4)), limit=int(rng.integers(3, 15)))
        )
        for i in range(num_envs)
    ]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def n_step_by_hand(written: dict, i: int, e: int, cap: int, newest: int, n: int, gamma: float) -> tuple:
    """Transition (i, e)'s n-step return, gamma^m, termination and s_{t+m}, walking the transitions as the
    environment produced them: the window stops at a termination (a lost life too), at an episode's end, and where
    the next transition has no s' yet."""
    ret = 0.0
    for j in range(n):
        _s, s_next, terminal, _a, r, done = written[(i + j) % cap, e]
        ret += gamma**j * r
        if terminal or done or j == n - 1 or (i + j + 1) % cap == newest:
            return ret, gamma ** (j + 1), terminal, s_next


@pytest.mark.parametrize("num_envs,capacity,n_step", [(1, 40, 1), (3, 60, 1), (1, 40, 3), (3, 60, 5)])
def test_replay_rebuilds_the_environments_transitions_across_episodes_and_wraparound(num_envs, capacity, n_step):
    """Every sampled minibatch against the transitions as the environment produced them: s and a, and the n-step
    return, discount, termination and bootstrap state s_{t+m} summed by hand."""
    rng = np.random.default_rng(0)
    envs = fake_vector_env(num_envs, rng)
    replay = D.ReplayMemory(capacity, num_envs, (84, 84), 4, seed=0)
    obs, _ = envs.reset(seed=0)
    written = {}  # (slot, column) -> (s, s', terminated, action, clipped reward, done), as the environment gave them
    ends = 0
    for t in range(200):  # several wraparounds of every column
        actions = rng.integers(0, 4, num_envs)
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        dones = terminations | truncations
        terminal = terminations | (infos["life_lost"] & ~dones)
        slots = replay.pos.copy()
        replay.add(obs, actions, np.sign(rewards), terminal, dones, infos.get("final_obs"))
        for e in range(num_envs):
            true_next = infos["final_obs"][e] if dones[e] else next_obs[e]
            written[slots[e], e] = (
                obs[e].copy(),
                true_next.copy(),
                terminal[e],
                actions[e],
                np.sign(rewards[e]),
                dones[e],
            )
            if dones[e]:
                written.pop(((slots[e] + 1) % replay.cap, e), None)  # the final-frame slot holds no transition
        ends += dones.sum()
        obs = next_obs
        if t > 50:
            state = replay.rng.bit_generator.state
            b = {k: v.numpy() for k, v in replay.sample(256, "cpu", n_step, 0.9).items()}
            replay.rng.bit_generator.state = state  # the same draws again
            for k, (i, e) in enumerate(zip(*replay.sample_indices(256), strict=True)):
                newest = (replay.pos[e] - 1) % replay.cap
                ret, discount, terminal, s_next = n_step_by_hand(written, i, e, replay.cap, newest, n_step, 0.9)
                np.testing.assert_array_equal(b["obs"][k], written[i, e][0])
                assert b["actions"][k] == written[i, e][3] and b["terminated"][k] == terminal
                assert b["rewards"][k] == pytest.approx(ret) and b["discounts"][k] == pytest.approx(discount)
                if not terminal:
                    np.testing.assert_array_equal(b["next_obs"][k], s_next)
    assert ends > 20 and replay.full.all()
    # every transition still stored and not next to the cursor is sampled
    seen = set(zip(*replay.sample_indices(20_000), strict=True))
    per_column = replay.cap - 4  # cap slots, less the newest (no s') and the 3 oldest (history overwritten)
    expected = per_column * num_envs - sum(
        replay.last[(replay.pos[e] + 3 + np.arange(per_column)) % replay.cap, e].sum() for e in range(num_envs)
    )
    assert len(seen) == expected


def test_replay_truncation_bootstraps_from_the_final_frame_and_termination_does_not():
    envs = gym.vector.SyncVectorEnv(
        [
            lambda: stacked(Frames(life_every=4, lives=1, limit=100)),
            lambda: stacked(Frames(life_every=100, lives=1, limit=5)),
        ],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    replay = D.ReplayMemory(100, 2, (84, 84), 4, seed=0)
    obs, _ = envs.reset(seed=0)
    for _ in range(5):
        next_obs, rewards, terminations, truncations, infos = envs.step(np.zeros(2, np.int64))
        dones = terminations | truncations
        replay.add(obs, np.zeros(2), rewards, terminations, dones, infos.get("final_obs"))
        obs = next_obs
    # column 0 terminated at step 4 (slot 3), column 1 was truncated at step 5 (slot 4)
    assert replay.terminated[3, 0] and replay.last[4, 0] and not replay.terminated[4, 1] and replay.last[5, 1]
    s_next = replay.stacks(np.array([4, 5]), np.array([0, 1]))
    assert [f[0, 0] for f in s_next[1]] == [2, 3, 4, 5]  # the true final frames, not the next game's
    q_next = torch.tensor([[1.0, 7.0], [2.0, 5.0]])
    y = D.td_target(torch.tensor([1.0, 1.0]), torch.tensor([True, False]), q_next, None, 0.9, False)
    assert y.tolist() == pytest.approx([1.0, 1.0 + 0.9 * 5.0])


def test_replay_new_episodes_after_resume_never_pairs_two_games():
    replay = D.ReplayMemory(50, 1, (84, 84), 4, seed=0)
    stack = np.zeros((1, 4, 84, 84), np.uint8)
    for t in range(10):
        stack[0, -1] = t
        replay.add(stack, [0], [0.0], [False], [False], None)
    replay.new_episodes()
    for t in range(10):
        stack[0, -1] = 100 + t
        replay.add(stack, [0], [0.0], [False], [False], None)
    slots, _cols = replay.sample_indices(5000)
    assert set(slots) == set(range(19)) - {9}  # slot 9 lost its s', slot 19 has none yet
    s, s_next = replay.stacks(np.array([10]), np.array([0])), replay.stacks(np.array([9]), np.array([0]))
    assert [f[0, 0] for f in s[0]] == [0, 0, 0, 100] and [f[0, 0] for f in s_next[0]] == [6, 7, 8, 9]


@pytest.mark.parametrize("steps", [20, 60])  # 30 slots a column: partly filled; wrapped around
def test_replay_checkpoint_holds_the_filled_slots_only(steps, tmp_path):
    rng = np.random.default_rng(0)
    envs, replay = fake_vector_env(2, rng), D.ReplayMemory(60, 2, (84, 84), 4, seed=0)
    obs, _ = envs.reset(seed=0)
    for _ in range(steps):
        actions = rng.integers(0, 4, 2)
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        dones = terminations | truncations
        replay.add(obs, actions, np.sign(rewards), terminations, dones, infos.get("final_obs"))
        obs = next_obs
    filled = max(replay.cap if replay.full[e] else replay.pos[e] for e in range(2))
    assert (filled < replay.cap) == (steps == 20)
    torch.save(replay.state_dict(), tmp_path / "replay.pt")
    assert os.path.getsize(tmp_path / "replay.pt") < filled * 2 * 84 * 84 + 20_000  # the frames, little else
    again = D.ReplayMemory(60, 2, (84, 84), 4, seed=1)
    again.load_state_dict(torch.load(tmp_path / "replay.pt", weights_only=False, mmap=True))
    for k in ("frames", "actions", "rewards", "terminated", "first", "last", "pos", "full", "next_first"):
        assert np.array_equal(getattr(again, k), getattr(replay, k)), k
    assert np.array_equal(again.sample_indices(64), replay.sample_indices(64))


# Targets
@pytest.mark.parametrize("double_q", [False, True])
def test_td_targets_match_brute_force(double_q):
    check_td_target(D.td_target, double_q)


class Table(torch.nn.Module):
    """A stand-in Q-network: row obs[:, -1, 0, 0] (the newest frame's first pixel) of a fixed (S, A) table."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, obs):
        return self.table[obs[:, -1, 0, 0].long()]


@pytest.mark.parametrize("double_q", [False, True])
@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_dqn_loss_matches_brute_force(loss, double_q):
    """dqn_loss itself: Q(s, a) and the mean Huber or squared TD error, with terminated transitions."""
    B, A, gamma = 16, 4, 0.9
    g = torch.Generator().manual_seed(0)
    online, target = Table(2 * torch.randn(2 * B, A, generator=g)), Table(2 * torch.randn(2 * B, A, generator=g))
    obs = torch.randint(0, 256, (B, 4, 84, 84), generator=g, dtype=torch.uint8)
    next_obs = torch.randint(0, 256, (B, 4, 84, 84), generator=g, dtype=torch.uint8)
    obs[:, -1, 0, 0], next_obs[:, -1, 0, 0] = torch.arange(B), B + torch.arange(B)  # s_i: row i, s'_i: row B + i
    actions, rewards = torch.randint(0, A, (B,), generator=g), torch.randint(-1, 2, (B,), generator=g).float()
    terminated = torch.arange(B) % 3 == 0
    b = {"obs": obs, "next_obs": next_obs, "actions": actions, "rewards": rewards, "terminated": terminated}
    td_loss, q_taken = D.dqn_loss(online, target, b | {"discounts": torch.full((B,), gamma)}, double_q, loss)

    q, t = online.table.detach().numpy(), target.table.detach().numpy()
    actions, rewards, terminated = actions.numpy(), rewards.numpy(), terminated.numpy()
    want_q = np.array([q[i, actions[i]] for i in range(B)])
    y = brute_force_targets(rewards, terminated, t[B:], q[B:], gamma, double_q)
    errors = want_q - np.array(y)
    huber = [0.5 * e**2 if abs(e) < 1 else abs(e) - 0.5 for e in errors]
    np.testing.assert_allclose(q_taken.detach().numpy(), want_q, rtol=1e-6)
    assert td_loss.item() == pytest.approx(np.mean(huber if loss == "huber" else errors**2), rel=1e-5)
    td_loss.backward()
    assert target.table.grad is None  # the target is a constant
    # the batch tells the variants apart: errors on both sides of 1, and on a game that goes on the online
    # network's a' is not the target network's
    assert (abs(errors) < 1).any() and (abs(errors) > 1).any()
    assert (q[B:].argmax(1) != t[B:].argmax(1))[~terminated].any()


# The loop, on a fake game
@pytest.fixture
def fake_game(monkeypatch):
    def make_env(env_id, sticky, render_mode=None):
        return stacked(Frames(life_every=10, lives=3, limit=1000, reward=3.0))

    monkeypatch.setattr(D, "make_env", make_env)


def fake_args(**kw):
    return D.Args(
        **{
            "total_timesteps": 300,
            "buffer_size": 1000,
            "learning_starts": 100,
            "batch_size": 8,
            "cuda": False,
            "progress": False,
            "eval_episodes": 0,
            **kw,
        }
    )


def test_loop_logs_unclipped_whole_game_returns_and_stores_clipped_rewards(in_tmp, fake_game):
    result = D.main(fake_args())
    assert result["episodic_returns"][:5] == [90.0] * 5  # 30 steps (3 lives) of reward 3, unclipped
    replay = result["replay"]
    n = replay.pos[0]
    assert set(replay.rewards[:n, 0][~replay.last[:n, 0]]) == {1.0}
    # a terminal every 10 steps: two lost lives, then the game over; 31 slots per game with the final frame
    assert np.flatnonzero(replay.terminated[:31, 0]).tolist() == [9, 19, 29] and replay.last[30, 0]
    logged = scalars(result["run_dir"])
    assert {"charts/epsilon", "losses/td_loss", "losses/q_values", "charts/SPS"} <= set(logged)


def test_loop_learns_from_n_step_targets(in_tmp, fake_game):
    """--n-step reaches the loss: its minibatches are discounted by gamma^3, or less far where a window met the
    write cursor; a window that met a lost life (terminal) does not bootstrap."""
    discounts, real_loss = [], D.dqn_loss

    def spy(q_network, target_network, b, *rest):
        discounts.extend(b["discounts"][~b["terminated"]].tolist())
        return real_loss(q_network, target_network, b, *rest)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(D, "dqn_loss", spy)
        D.main(fake_args(n_step=3, gamma=0.5))
    assert set(discounts) <= {0.5, 0.25, 0.125} and discounts.count(0.125) > 0.9 * len(discounts)


def test_target_network_is_a_copy_of_the_online_network_after_each_target_update(in_tmp, fake_game):
    """tau = 1: every target_network_frequency steps the target becomes the online network, and between two such
    steps it stays as it was while the online network learns."""
    snapshots = []
    real_loss = D.dqn_loss

    def spy(q_network, target_network, b, *rest):
        snapshots.append(
            ([p.clone() for p in q_network.parameters()], [p.clone() for p in target_network.parameters()])
        )
        return real_loss(q_network, target_network, b, *rest)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(D, "dqn_loss", spy)
        result = D.main(fake_args(total_timesteps=300, learning_starts=100, target_network_frequency=100))
    q, target = result["q_network"].parameters(), result["target_network"].parameters()
    assert all(torch.equal(a, b) for a, b in zip(q, target, strict=True))  # copied at step 300, the last
    changes = 0
    for (_, before), (online, after) in itertools.pairwise(snapshots):  # from one gradient step to the next
        if not all(torch.equal(a, b) for a, b in zip(before, after, strict=True)):
            changes += 1  # a target update in between: the online network as it was, exactly
            assert all(torch.equal(a, b) for a, b in zip(online, after, strict=True))
    assert changes >= 1 and not all(torch.equal(a, b) for a, b in zip(snapshots[0][0], snapshots[-1][0]))


def test_checkpoint_then_resume_restores_networks_optimizer_step_and_replay(in_tmp, fake_game, monkeypatch):
    first = D.main(fake_args(checkpoint_every=300))
    path = os.path.join(first["run_dir"], "checkpoint.pt")
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["global_step"] == 300 and ckpt["num_updates"] == first["num_updates"] > 0
    # one step more (no gradient step, no target update): networks and optimizer as saved, the replay one step on
    monkeypatch.setattr(sys, "argv", ["dqn_atari.py", "--total-timesteps", "301"])
    same = D.main(fake_args(resume=path, total_timesteps=301))
    assert (
        same["run_dir"] == first["run_dir"]
        and same["global_step"] == 301
        and same["num_updates"] == ckpt["num_updates"]
    )
    for name in ("q_network", "target_network"):
        for k, v in ckpt[name].items():
            assert torch.equal(same[name].state_dict()[k], v)
    opt = same["optimizer"].state_dict()["state"]
    for i, s in ckpt["optimizer"]["state"].items():
        assert all(torch.equal(opt[i][k], v) for k, v in s.items())
    filled = len(ckpt["replay"]["frames"])
    assert filled == ckpt["replay"]["pos"][0] < 1000  # the filled slots only
    for k, v in ckpt["replay"].items():
        if k not in ("rng", "last", "next_first", "pos"):
            assert np.array_equal(getattr(same["replay"], k)[: len(v)], v.numpy()), k
    last = ckpt["replay"]["last"].numpy().copy()
    last[ckpt["replay"]["pos"][0] - 1, 0] = True  # the newest transition lost its s' with the environment
    assert np.array_equal(same["replay"].last[:filled], last) and not same["replay"].frames[filled + 1 :].any()
    assert same["replay"].pos[0] == filled + 1 and same["replay"].first[filled, 0]  # a new game's first frame
    monkeypatch.setattr(sys, "argv", ["dqn_atari.py", "--total-timesteps", "600"])  # given: extends the run
    more = D.main(fake_args(resume=path, total_timesteps=600))
    assert more["global_step"] == 600 and more["num_updates"] == first["num_updates"] + 75
    steps = [s for s, _ in scalars(first["run_dir"])["charts/episodic_return"]]
    assert steps == sorted(steps) and steps[-1] > 300
    no_replay = D.main(fake_args(checkpoint_every=300, checkpoint_replay=False))
    assert torch.load(os.path.join(no_replay["run_dir"], "checkpoint.pt"), weights_only=False)["replay"] is None


def test_sigterm_writes_a_checkpoint_and_exits_143(tmp_path):
    flags = [
        "--total-timesteps",
        "100000",
        "--buffer-size",
        "5000",
        "--learning-starts",
        "1000",
        "--no-progress",
        "--no-cuda",
        "--eval-episodes",
        "0",
    ]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "dqn_atari.py"), *flags],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not list(tmp_path.glob("runs/*/events.*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    (path,) = tmp_path.glob("runs/*/checkpoint.pt")
    ckpt = torch.load(path, weights_only=False)
    assert 0 < ckpt["global_step"] < 100000 and f"--resume {os.path.relpath(path, tmp_path)}" in out
    filled = 5000 if ckpt["replay"]["full"][0] else ckpt["replay"]["pos"][0]
    assert len(ckpt["replay"]["frames"]) == filled  # the filled slots only


class PrefersAction4(torch.nn.Module):
    """A Q-network that learns nothing (its gradient is 0) and always values action 4 most, an action that the
    environment's sampler never draws (Frames has 4): an action 4 is a greedy one, any other a random one."""

    def __init__(self, n_actions):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, obs):
        return (torch.arange(5) == 4).float().expand(len(obs), 5) + 0 * self.w


def test_epsilon_as_the_loop_acts_over_a_run_and_after_a_resume(in_tmp, monkeypatch):
    """Each step acts greedily exactly when the loop's uniform draw (NumPy's stream, seeded, then restored from
    the checkpoint) is at least epsilon: 1 falling to 0.1 over the run's first length (100 steps), then 0.1 also
    after a resume that extends the run to 300 steps (a schedule stretched over 300 would act randomly more)."""
    log = []
    monkeypatch.setattr(D, "make_env", lambda *a, **k: stacked(Frames(life_every=10, lives=3, log=log)))
    monkeypatch.setattr(D, "QNetwork", PrefersAction4)
    args = fake_args(total_timesteps=100, learning_starts=8, batch_size=8, checkpoint_every=100)
    args = dataclasses.replace(args, exploration_fraction=1.0, start_e=1.0, end_e=0.1)
    first = D.main(args)
    path = os.path.join(first["run_dir"], "checkpoint.pt")
    draws = np.random.RandomState(args.seed).random(100).tolist()
    stream = np.random.RandomState()
    stream.set_state(torch.load(path, weights_only=False)["rng"]["numpy"])
    monkeypatch.setattr(sys, "argv", ["dqn_atari.py", "--total-timesteps", "300"])
    D.main(dataclasses.replace(args, resume=path, total_timesteps=300))
    draws += stream.random(200).tolist()
    t = np.arange(300)
    epsilon = np.where(t < 100, 1.0 + (0.1 - 1.0) * t / 100, 0.1)
    greedy = np.array(log) == 4
    assert len(log) == 300 and not greedy[:8].any()  # uniformly random until the replay holds learning_starts
    assert np.array_equal(greedy[8:], (np.array(draws) >= epsilon)[8:])
    assert 30 < greedy[:100].sum() < 70 and greedy[100:].mean() > 0.8  # the schedule shows in these steps


def test_learns_to_read_the_screen(in_tmp, monkeypatch):
    """A pixel bandit: the screen's bright half says which of two actions pays +1 (the other -1)."""

    class Side(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)
        action_space = gym.spaces.Discrete(2)

        def obs(self):
            self.side = int(self.np_random.integers(2))
            f = np.zeros((84, 84), np.uint8)
            f[:, 42 * self.side : 42 * (self.side + 1)] = 255
            return f

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self.obs(), {"lives": 1}

        def step(self, action):
            reward, self.t = (1.0 if action == self.side else -1.0), self.t + 1
            return self.obs(), reward, False, self.t >= 10, {"lives": 1}

    monkeypatch.setattr(D, "make_env", lambda *a, **k: stacked(Side()))
    result = D.main(
        fake_args(
            total_timesteps=1500,
            learning_starts=300,
            batch_size=32,
            train_frequency=2,
            target_network_frequency=100,
            gamma=0.5,
            eval_episodes=5,
            eval_epsilon=0.0,
        )
    )
    assert np.mean(result["eval_returns"]) >= 9.0  # random play scores 0
