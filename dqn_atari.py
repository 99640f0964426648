"""DQN from pixels (Mnih et al. 2015): a Nature CNN Q-network, experience replay and a target network.

A network Q_theta(s, .) maps a stack of the last 4 preprocessed frames to one value per action. The agent acts
epsilon-greedily (epsilon decays linearly from start_e to end_e), stores every transition (s, a, r, s') in a
replay memory, and every train_frequency steps takes one Adam step on a uniform minibatch of it:

    y = r + gamma * (1 - terminated) * max_a' Q_target(s', a')                     (DQN target)
    y = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q_theta(s', a'))    (--double-q)
    r, gamma, s' -> r_t + ... + gamma^(n-1) r_{t+n-1}, gamma^n, s_{t+n}           (--n-step n; Sutton 1988)
    L = mean( huber(Q_theta(s, a) - y) )        Huber: squared below 1, linear above (the paper's error clip)

Q_target is a copy of Q_theta refreshed every target_network_frequency steps (tau = 1), or moved towards it
by Polyak averaging (tau < 1). Replay breaks the correlation of consecutive frames; the frozen target keeps
y from chasing Q. Papers: Mnih et al. 2015, "Human-level control through deep reinforcement learning",
Nature 518:529; van Hasselt et al. 2016, "Deep RL with double Q-learning", arXiv:1509.06461.

Departures from the paper (the defaults are those of CleanRL's reproduction; the paper's values are in the flags'
docs): Adam at 1e-4 instead of RMSProp at 2.5e-4; the target refreshed every 1,000 steps instead of every 10,000
updates; epsilon to 0.01 over 10% of the run instead of to 0.1 over 1M frames; learning from 80k steps instead of
50k. --loss mse gives CleanRL's squared loss. The README's preset for Pong in 1M steps on a CPU adds 3-step targets
(with prioritized replay, what Rainbow's ablations, arXiv:1710.02298, found most speeds early learning) and Double
DQN, and scales the replay (100k), the random start (20k steps) and epsilon's decay (100k steps) to the shorter run.

Preprocessing (DeepMind), written out as gymnasium wrappers in make_env: 1 to 30 no-op frames at reset, each action
repeated for 4 frames with the max of the last two (sprites that flicker stay visible), 84x84 grayscale, the last 4
frames stacked (zeros before the episode's first). A lost life is terminal for learning but the game goes on;
rewards are clipped to their sign for learning; the return logged is the real, unclipped score of the whole game,
which is truncated after 108,000 frames (30 minutes of play).
Sticky actions (p 0.25, arXiv:1709.06009): always with v5 ids (ALE/Pong-v5); NoFrameskip-v4 ids with --sticky-actions.
Where the action set has FIRE, FIRE is pressed at reset and after each lost life, as CleanRL and SB3 do (the paper
did not): where a game waits for FIRE (Breakout), a greedy policy that never chooses it would stall until the limit.

Replay memory. Each 84x84 frame is stored once, as uint8, and the 4-frame stacks of s and s' are rebuilt when
sampled: 7.06 GB for 1M transitions instead of 8 frames (56 GB) per transition. Environments reset inside the step
that ends an episode (gymnasium's SAME_STEP autoreset); the episode's true final frame, info["final_obs"], gets its
own slot, so a truncation bootstraps from it; a termination (game over or lost life) never does. Stacks are padded
with zeros before an episode's first frame, as the environment's own; neither they nor an n-step window (which also
stops at an episode's end) reach across the write cursor.

Usage:
    python dqn_atari.py --env-id BreakoutNoFrameskip-v4
    python dqn_atari.py --resume runs/.../checkpoint.pt  # its own flags; a new --total-timesteps extends the run
    python dqn_atari.py --evaluate runs/.../model.pt --eval-episodes 30 --capture-video  # no training

TensorBoard keys:
    charts/episodic_return    the unclipped score of each finished game (all lives)
    charts/episodic_length    length of that game, agent steps (4 frames each)
    charts/epsilon            exploration rate of the epsilon-greedy policy
    charts/SPS                agent steps per second since the start (or the resume)
    losses/td_loss            mean Huber (or squared) TD error of the last minibatch
    losses/q_values           mean Q_theta(s, a) of the last minibatch
    eval/episodic_return      score of each evaluation game of the final (saved) network, epsilon eval_epsilon
"""

# 1. Imports
import dataclasses
import importlib.util
import os
import random
import re
import signal
import sys
import time
from collections import deque
from functools import partial
from typing import Annotated, Literal

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
import tyro
from rich.progress import Progress, TextColumn
from torch import nn
from torch.utils.tensorboard import SummaryWriter

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)  # no emulator banner before the run folder


# 2. Args
@dataclasses.dataclass
class Args:
    # Experiment
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment, part of the run folder runs/{env_id}__{exp_name}__{seed}__{unix_time}"""
    seed: int = 1
    """seed of python, numpy, torch, the replay's sampling and the environments"""
    torch_deterministic: bool = True
    """make cuDNN deterministic (torch.backends.cudnn.deterministic)"""
    cuda: bool = True
    """use CUDA when it is available"""
    torch_threads: int = 1
    """torch's CPU threads, 0 for torch's default (one per core); why 1: benchmarks/README.md#threads"""
    save_model: bool = False
    """save the Q-network to {run folder}/model.pt at the end"""
    eval_episodes: int = 10
    """games to evaluate the final (saved, if --save-model) network with epsilon eval_epsilon; 0 skips"""
    eval_epsilon: float = 0.05
    """exploration rate during evaluation (the paper's 0.05)"""
    capture_video: bool = False
    """record the evaluation games to {run folder}/videos (needs moviepy)"""
    progress: bool = True
    """show a progress bar (plain periodic lines when stdout is not a terminal)"""
    checkpoint_every: int = 0
    """agent steps between checkpoints ({run folder}/checkpoint.pt); 0: only on SIGINT/SIGTERM"""
    checkpoint_replay: bool = True
    """include the replay memory in checkpoints (its filled part, up to 7 GB); without it a resumed run refills it"""
    resume: Annotated[str | None, tyro.conf.arg(metavar="PATH")] = None
    """checkpoint.pt to continue a run from, in its own folder with its own flags; a new --total-timesteps extends it"""
    evaluate: Annotated[str | None, tyro.conf.arg(metavar="PATH")] = None
    """model.pt or checkpoint.pt to evaluate for --eval-episodes episodes, into a new run folder, without training"""
    track: bool = False
    """also send the TensorBoard scalars to Weights & Biases (needs wandb; WANDB_MODE=offline needs no account)"""
    wandb_project_name: str = "single-file-rl"
    """Weights & Biases project of --track"""
    wandb_entity: Annotated[str | None, tyro.conf.arg(metavar="NAME")] = None
    """Weights & Biases team or user of --track (None: your default entity)"""
    # Environment
    env_id: str = "BreakoutNoFrameskip-v4"
    """Atari id: BreakoutNoFrameskip-v4, or ALE/Breakout-v5 (the same game, always with sticky actions)"""
    total_timesteps: int = 10_000_000
    """total agent steps, all environments together (4 frames each; paper: 50M)"""
    num_envs: int = 1
    """environments stepped together, one replay memory (paper: 1)"""
    sticky_actions: bool = False
    """repeat the previous action with probability 0.25 at every frame, as v5 ids always do (paper: off)"""
    # Algorithm
    buffer_size: int = 1_000_000
    """replay capacity, transitions (paper: 1M)"""
    learning_rate: float = 1e-4
    """Adam learning rate (paper: RMSProp, 2.5e-4)"""
    gamma: float = 0.99
    """discount factor, in [0, 1] (paper: 0.99)"""
    tau: float = 1.0
    """target update rate: 1 copies the network, < 1 is Polyak averaging target <- tau Q + (1 - tau) target"""
    target_network_frequency: int = 1000
    """agent steps between target updates (paper: every 10,000 updates, i.e. 40,000 steps)"""
    batch_size: int = 32
    """transitions per gradient step (paper: 32)"""
    start_e: float = 1.0
    """initial exploration rate (paper: 1)"""
    end_e: float = 0.01
    """final exploration rate (paper: 0.1)"""
    exploration_fraction: float = 0.10
    """fraction of --total-timesteps over which epsilon decays linearly (paper: the first 1M of 50M steps)"""
    learning_starts: int = 80_000
    """transitions in the replay before learning starts, acting uniformly at random until then (paper: 50,000)"""
    train_frequency: int = 4
    """agent steps between gradient steps (paper: 4)"""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: huber (the paper's clipped error) or mse (squared, CleanRL's)"""
    double_q: bool = False
    """Double DQN target: the online network picks a', the target network values it"""
    n_step: int = 1
    """rewards summed before bootstrapping: n-step targets (paper: 1)"""


# 3. Networks
class QNetwork(nn.Module):
    """The Nature CNN: (B, 4, 84, 84) uint8 -> (B, actions) Q-values."""

    def __init__(self, n_actions: int):
        super().__init__()
        convs = [nn.Conv2d(4, 32, 8, stride=4), nn.Conv2d(32, 64, 4, stride=2), nn.Conv2d(64, 64, 3, stride=1)]
        layers = [m for conv in convs for m in (conv, nn.ReLU())]  # 84 -> 20 -> 9 -> 7 pixels a side
        head = [nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, n_actions)]
        self.net = nn.Sequential(*layers, *head)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float() / 255.0)


# 4. Targets and losses
def td_target(rewards, terminated, next_q_target, next_q_online, gamma, double_q: bool) -> torch.Tensor:
    """rewards, terminated, gamma (B,) or gamma a number; next_q_target, next_q_online (B, A) at s'. Returns y (B,):
    r + gamma (1 - terminated) max_a' Q_target(s', a'), or with double_q Q_target(s', argmax_a' Q_online(s', a'))."""
    if double_q:
        next_value = next_q_target.gather(1, next_q_online.argmax(1, keepdim=True)).squeeze(1)
    else:
        next_value = next_q_target.max(1).values
    return rewards + gamma * (~terminated).to(rewards.dtype) * next_value


def dqn_loss(q_network, target_network, b: dict, double_q: bool, loss: str) -> tuple:
    """The TD loss (loss: "huber" or "mse") of a minibatch b (obs, next_obs (B, 4, 84, 84); actions, rewards,
    discounts, terminated (B,): n-step returns, gamma^n, s_{t+n} as next_obs), and Q_theta(s, a) (B,)."""
    with torch.no_grad():
        next_q_online = q_network(b["next_obs"]) if double_q else None
        y = td_target(
            b["rewards"], b["terminated"], target_network(b["next_obs"]), next_q_online, b["discounts"], double_q
        )
    q_taken = q_network(b["obs"]).gather(1, b["actions"].unsqueeze(1)).squeeze(1)
    td_loss = F.smooth_l1_loss(q_taken, y) if loss == "huber" else F.mse_loss(q_taken, y)
    return td_loss, q_taken


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """From start at step 0 to end at step `duration`, linearly, then constant."""
    return start + (end - start) * t / duration if t < duration else end


def multiples_between(before: int, after: int, every: int) -> int:
    """Multiples of `every` in (before, after]: the gradient steps (or target updates) due as global_step moves."""
    return after // every - before // every


# 5. Training loop
def main(args: Args) -> dict:
    # SETUP
    args, checkpoint = load_run(args, "dqn_atari.py", "epsilon keeps the schedule of the run's first length")
    obs_space, action_space = validate(args)
    num_envs = args.num_envs
    if (steps := -(-args.total_timesteps // num_envs) * num_envs) != args.total_timesteps:
        print(f"note: --total-timesteps {args.total_timesteps} runs as {steps}, a whole number of steps of all envs")
    device = setup_torch(args.seed, args.cuda, args.torch_threads, args.torch_deterministic)
    q_network, target_network = QNetwork(action_space.n).to(device), QNetwork(action_space.n).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate)
    evaluation = partial(
        evaluate, q_network, args.env_id, args.sticky_actions, args.eval_episodes, args.eval_epsilon, args.seed + 10_000
    )
    if args.evaluate:  # no training: the saved network's evaluation games, in a new run folder
        q_network.load_state_dict(checkpoint["q_network"])
        writer = open_run(args)
        eval_returns = finish_run(args, "dqn_atari.py", writer, {"signal": None}, {}, evaluation)[0]
        return {"run_dir": writer.log_dir, "global_step": 0, "eval_returns": eval_returns, "signal": None}
    replay = ReplayMemory(args.buffer_size, num_envs, obs_space.shape[1:], obs_space.shape[0], args.seed)
    modules = {"q_network": q_network, "target_network": target_network, "optimizer": optimizer}
    fresh = {"global_step": 0, "num_updates": 0, "schedule_timesteps": args.total_timesteps, "run_dir": None}
    state = restore(checkpoint, modules, fresh)
    global_step, num_updates = state["global_step"], state["num_updates"]
    explore_steps = int(args.exploration_fraction * state["schedule_timesteps"])  # the run's first length's
    if checkpoint and checkpoint["replay"] is not None:
        replay.load_state_dict(checkpoint["replay"])
        replay.new_episodes()  # the environments restart from new games: their state is not saved
    writer = open_run(args, state["run_dir"], resumed_at=global_step if checkpoint else None)
    state["run_dir"] = run_dir = writer.log_dir
    del checkpoint  # its replay
    envs = make_envs(args.env_id, num_envs, args.sticky_actions)
    stop = catch_stop_signals()  # finish the step in progress, then checkpoint and exit

    # LOOP
    start_time, start_step, sps = time.time(), global_step, 0
    episodic_returns, episodic_steps, recent_returns = [], [], deque(maxlen=20)
    ep_return, ep_length = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    progress = ProgressReport(args.total_timesteps, global_step, args.progress)
    obs, _ = envs.reset(seed=args.seed + global_step)
    envs.action_space.seed(args.seed + global_step)
    while global_step < args.total_timesteps:
        # ACT: uniformly random until learning starts, then epsilon-greedy (the network only runs when needed)
        epsilon = linear_schedule(args.start_e, args.end_e, explore_steps, global_step)
        actions = envs.action_space.sample()
        greedy = np.random.random(num_envs) >= epsilon
        if len(replay) >= args.learning_starts and greedy.any():
            with torch.no_grad():
                actions[greedy] = q_network(torch.as_tensor(obs[greedy], device=device)).argmax(1).cpu().numpy()

        # STEP
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        global_step += num_envs
        dones = terminations | truncations
        sps = int((global_step - start_step) / (time.time() - start_time))

        # RECORD EPISODES: the real, unclipped score of whole games
        ep_return += rewards
        ep_length += 1
        for i in np.flatnonzero(dones):
            episodic_returns.append(float(ep_return[i]))
            episodic_steps.append(global_step)
            recent_returns.append(float(ep_return[i]))
            writer.add_scalar("charts/episodic_return", ep_return[i], global_step)
            writer.add_scalar("charts/episodic_length", ep_length[i], global_step)
        ep_return[dones], ep_length[dones] = 0.0, 0

        # STORE: a lost life is terminal for learning; rewards clipped to their sign
        terminal = terminations | (infos["life_lost"] & ~dones)
        replay.add(obs, actions, np.sign(rewards), terminal, dones, infos.get("final_obs"))
        obs = next_obs

        # LEARN: one gradient step every train_frequency agent steps
        if len(replay) >= args.learning_starts:
            for _ in range(multiples_between(global_step - num_envs, global_step, args.train_frequency)):
                b = replay.sample(args.batch_size, device, args.n_step, args.gamma)
                td_loss, q_taken = dqn_loss(q_network, target_network, b, args.double_q, args.loss)
                optimizer.zero_grad()
                td_loss.backward()
                optimizer.step()
                num_updates += 1

                # LOG
                if num_updates % 100 == 1:  # the first update, then every 100th
                    writer.add_scalar("losses/td_loss", td_loss.item(), global_step)
                    writer.add_scalar("losses/q_values", q_taken.mean().item(), global_step)
                    writer.add_scalar("charts/epsilon", epsilon, global_step)
                    writer.add_scalar("charts/SPS", sps, global_step)
            if multiples_between(global_step - num_envs, global_step, args.target_network_frequency):
                for p, tp in zip(q_network.parameters(), target_network.parameters(), strict=True):
                    tp.data.lerp_(p.data, args.tau)  # tau = 1: a copy

        progress.update(global_step, sps, recent_returns)
        if checkpoint_due(stop, args.checkpoint_every, global_step - num_envs, global_step, args.total_timesteps):
            state |= {"global_step": global_step, "num_updates": num_updates}
            state["replay"] = replay.state_dict() if args.checkpoint_replay else None
            write_checkpoint(os.path.join(run_dir, "checkpoint.pt"), args, "dqn_atari.py", modules, state)
        if stop["signal"] is not None:
            break
    catch_stop_signals(False)
    progress.bar.stop()
    envs.close()

    # TEARDOWN
    summary = (global_step, global_step - start_step, time.time() - start_time, recent_returns, "")
    eval_returns, _ = finish_run(args, "dqn_atari.py", writer, stop, {"q_network": q_network}, evaluation, summary)
    result = {"run_dir": run_dir, "global_step": global_step, "episodic_returns": episodic_returns, "sps": sps}
    result |= {"episodic_steps": episodic_steps, "eval_returns": eval_returns, "signal": stop["signal"]}
    return result | modules | {"num_updates": num_updates, "replay": replay}  # modules: the networks, optimizer


# 6. Environment
def atari_game(env_id: str) -> str | None:
    """'ALE/Pong-v5' or 'PongNoFrameskip-v4' -> 'Pong'; None for other ids."""
    match = re.fullmatch(r"ALE/(\w+)-v5|(\w+)NoFrameskip-v4", env_id)
    return None if match is None else match.group(1) or match.group(2)


class NoopReset(gym.Wrapper):
    """At reset, take a random number (1 to 30) of no-op actions, one frame each: varied starting states."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for _ in range(self.unwrapped.np_random.integers(1, 31)):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class MaxAndSkip(gym.Wrapper):
    """Repeat each action for 4 frames, sum their rewards, return the max of the last two frames."""

    def step(self, action):
        total, last_two = 0.0, []
        for _ in range(4):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += reward
            last_two = [*last_two[-1:], obs]
            if terminated or truncated:
                break
        return np.maximum(last_two[0], last_two[-1]), total, terminated, truncated, info


class LifeLoss(gym.Wrapper):
    """info["life_lost"]: a life lost, the game going on (terminal for learning). fire: FIRE at reset and after it."""

    def __init__(self, env: gym.Env, fire: bool):
        super().__init__(env)
        self.fire = fire

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.fire:
            obs, _, terminated, truncated, info = self.env.step(1)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = info["lives"]
        return obs, {**info, "life_lost": False}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.fire and info["lives"] < self.lives and not (terminated or truncated):
            obs, fire_reward, terminated, truncated, info = self.env.step(1)
            reward += fire_reward
        life_lost = info["lives"] < self.lives and not (terminated or truncated)
        self.lives = info["lives"]
        return obs, reward, terminated, truncated, {**info, "life_lost": life_lost}


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights that average the input cells each output cell covers (area interpolation)."""
    edges, cells = np.linspace(0, n_in, n_out + 1)[:, None], np.arange(n_in)
    overlap = np.clip(np.minimum(edges[1:], cells + 1) - np.maximum(edges[:-1], cells), 0, None)
    return (overlap / np.diff(edges, axis=0)).astype(np.float32)


class Resize84(gym.ObservationWrapper):
    """(210, 160) -> (84, 84) uint8 by area averaging as OpenCV's INTER_AREA (CleanRL's, SB3's): rows @ frame @ cols."""

    def __init__(self, env: gym.Env, size: int = 84):
        super().__init__(env)
        h, w = env.observation_space.shape
        self.rows, self.cols = torch.from_numpy(area_matrix(h, size)), torch.from_numpy(area_matrix(w, size).T)
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, obs):  # in torch: numpy's BLAS threads would spin against torch's, 3-4x slower on 2 cores
        return (self.rows @ torch.from_numpy(obs).float() @ self.cols).round().to(torch.uint8).numpy()


def make_env(env_id: str, sticky: bool, render_mode: str | None = None) -> gym.Env:
    """One Atari game with the preprocessing of the header, from every frame of the emulator, in grayscale."""
    if atari_game(env_id) is None:
        raise gym.error.Error(f"DQN from pixels needs an Atari id such as BreakoutNoFrameskip-v4, got {env_id!r}")
    options = {"obs_type": "grayscale", "max_num_frames_per_episode": 108_000, "full_action_space": False}
    options["repeat_action_probability"] = 0.25 if sticky or env_id.startswith("ALE/") else 0.0  # v5: always
    env = gym.make(f"ALE/{atari_game(env_id)}-v5", frameskip=1, render_mode=render_mode, **options)
    env = LifeLoss(MaxAndSkip(NoopReset(env)), fire="FIRE" in env.unwrapped.get_action_meanings())
    return gym.wrappers.FrameStackObservation(Resize84(env), 4, padding_type="zero")  # zeros before the first


def make_envs(env_id: str, num_envs: int, sticky: bool = False) -> gym.vector.SyncVectorEnv:
    same_step = gym.vector.AutoresetMode.SAME_STEP  # see the header
    return gym.vector.SyncVectorEnv([lambda: make_env(env_id, sticky)] * num_envs, autoreset_mode=same_step)


# 7. Storage: frame replay; each frame stored once, stacks rebuilt at sampling
class ReplayMemory:
    """num_envs columns of capacity // num_envs slots. Slot t holds the newest frame of s_t with a_t, r_t (clipped),
    terminated_t and first_t (s_t began an episode); s_{t+1} ends at slot t + 1, the true final frame after an
    episode's last step: a slot marked `last`, which is not a transition and is never sampled."""

    def __init__(self, capacity: int, num_envs: int, frame_shape: tuple, stack: int, seed: int):
        self.cap, self.num_envs, self.stack = capacity // num_envs, num_envs, stack
        shape = (self.cap, num_envs)
        self.frames = np.zeros((*shape, *frame_shape), np.uint8)  # untouched pages cost no memory
        self.actions, self.rewards = np.zeros(shape, np.uint8), np.zeros(shape, np.float32)  # at most 18 actions
        self.terminated, self.first, self.last = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool)
        self.pos, self.full = np.zeros(num_envs, np.int64), np.zeros(num_envs, bool)  # next slot to write, per column
        self.next_first = np.ones(num_envs, bool)  # the next state written begins an episode
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(np.where(self.full, self.cap, self.pos).sum())

    def _write(self, e, frame, action, reward, terminated, first, last):
        p = self.pos[e]
        self.frames[p, e], self.actions[p, e], self.rewards[p, e] = frame, action, reward
        self.terminated[p, e], self.first[p, e], self.last[p, e] = terminated, first, last
        self.pos[e] = (p + 1) % self.cap
        self.full[e] |= self.pos[e] == 0

    def add(self, obs, actions, rewards, terminated, dones, final_obs):
        """obs (E, k, 84, 84): the stacks s_t; actions, rewards, terminated, dones (E,); final_obs: info's
        object array of true final stacks, used where dones."""
        for e in range(self.num_envs):
            self._write(e, obs[e, -1], actions[e], rewards[e], terminated[e], self.next_first[e], False)
            if dones[e]:
                self._write(e, final_obs[e][-1], 0, 0.0, False, False, True)
        self.next_first = np.asarray(dones, bool).copy()

    def new_episodes(self):
        """The environments restart (resume): the transition in each column's newest slot has no s'."""
        cols = np.flatnonzero(self.full | (self.pos > 0))
        self.last[self.pos[cols] - 1, cols] = True
        self.next_first[:] = True

    def sample_indices(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n uniform (slot, column) pairs whose s and s' stacks are complete: not the newest slot (no s' yet),
        not the k - 1 oldest when full (their history was overwritten), not a `last` slot."""
        slots, cols, todo = np.empty(n, np.int64), np.empty(n, np.int64), np.arange(n)
        while len(todo):
            e = self.rng.integers(0, self.num_envs, len(todo))
            pos, full = self.pos[e], self.full[e]
            span = np.where(full, self.cap - self.stack, pos - 1)  # slots to choose from
            i = np.where(full, pos + self.stack - 1, 0) + (self.rng.random(len(todo)) * span).astype(np.int64)
            slots[todo], cols[todo] = i % self.cap, e
            todo = todo[self.last[slots[todo], e]]
        return slots, cols

    def stacks(self, ends: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The (B, k, 84, 84) stacks ending at the given slots, frames from before the episode's first set to zero."""
        window = (ends[:, None] + np.arange(-self.stack + 1, 1)) % self.cap  # slots end-k+1 .. end
        frames, first = self.frames[window, cols[:, None]], self.first[window, cols[:, None]]
        # frame j belongs to the episode of the last frame unless an episode starts at one of the slots j+1 .. end
        started_later = np.logical_or.accumulate(first[:, :0:-1], axis=1)[:, ::-1]
        frames[:, :-1] *= ~started_later[:, :, None, None]
        return frames

    def n_step(self, slots: np.ndarray, cols: np.ndarray, n: int, gamma: float) -> tuple:
        """From each slot t: r_t + ... + gamma^(m-1) r_{t+m-1}, gamma^m, terminated, and slot t + m (where s_{t+m}
        ends); m < n where the window stops at a termination, an episode's end (its true final frame) or the cursor."""
        newest = (self.pos[cols] - 1) % self.cap
        returns, discounts = np.zeros(len(slots), np.float32), np.ones(len(slots), np.float32)
        terminated, ends, going = np.zeros(len(slots), bool), slots.copy(), np.ones(len(slots), bool)
        for _ in range(n):
            returns += going * discounts * self.rewards[ends, cols]
            terminated |= going & self.terminated[ends, cols]
            discounts = np.where(going, discounts * gamma, discounts)
            ends = np.where(going, (ends + 1) % self.cap, ends)
            going &= ~terminated & ~self.last[ends, cols] & (ends != newest)
        return returns, discounts, terminated, ends

    def sample(self, n: int, device, n_step: int, gamma: float) -> dict:
        slots, cols = self.sample_indices(n)
        returns, discounts, terminated, ends = self.n_step(slots, cols, n_step, gamma)
        b = {"obs": self.stacks(slots, cols), "next_obs": self.stacks(ends, cols), "rewards": returns}
        b |= {"actions": self.actions[slots, cols].astype(np.int64), "discounts": discounts, "terminated": terminated}
        return {k: torch.as_tensor(v, device=device) for k, v in b.items()}

    def state_dict(self) -> dict:
        """The slots filled in any column (all once one wrapped around) as tensors sharing the arrays' memory."""
        n = int(np.where(self.full, self.cap, self.pos).max())
        arrays = {k: getattr(self, k)[:n] for k in ("frames", "actions", "rewards", "terminated", "first", "last")}
        arrays |= {k: getattr(self, k) for k in ("pos", "full", "next_first")}
        return {k: torch.from_numpy(v) for k, v in arrays.items()} | {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict):
        """Writes the saved slots only: the rest of the arrays stays untouched (no memory)."""
        self.rng.bit_generator.state = state["rng"]
        for k in state.keys() - {"rng"}:
            getattr(self, k)[: len(state[k])] = state[k].numpy()


# 8. Plumbing
def validate(args: Args) -> tuple[gym.Space, gym.Space]:
    """Check every flag before any work; return the single observation and action spaces."""

    def make(render_mode=None):  # check_args' ranges, then these, then the game (the emulator's banner after)
        if not 0.0 < args.tau <= 1.0:
            fail("--tau", f"must be in (0, 1], got {args.tau}")
        if args.batch_size > args.buffer_size:
            fail("--batch-size", f"{args.batch_size} is larger than the replay (--buffer-size {args.buffer_size})")
        if args.buffer_size // args.num_envs < 2 * 4:
            fail("--buffer-size", f"must hold at least 8 transitions per environment, got {args.buffer_size}")
        low = max(args.batch_size, 2 * args.num_envs)  # a first minibatch; a transition and its s' in every column
        if not low <= args.learning_starts <= args.buffer_size:
            within = f"at least --batch-size and 2 * --num-envs ({low}), at most --buffer-size ({args.buffer_size})"
            fail("--learning-starts", f"must be {within}, got {args.learning_starts}")
        if args.learning_starts + args.train_frequency > args.total_timesteps:
            no_step = f"{args.learning_starts} leaves no gradient step in --total-timesteps {args.total_timesteps}"
            fail("--learning-starts", f"{no_step} (one every --train-frequency {args.train_frequency}): train longer")
        return make_env(args.env_id, args.sticky_actions, render_mode)

    sizes = "n_step total_timesteps num_envs buffer_size batch_size train_frequency target_network_frequency"
    fractions = "gamma start_e end_e exploration_fraction eval_epsilon"
    with check_args(args, make, positive=f"{sizes} learning_rate", fraction=fractions) as env:
        return env.observation_space, env.action_space


@torch.no_grad()
def evaluate(q_network, env_id: str, sticky: bool, episodes: int, epsilon: float, seed: int, video_dir=None) -> tuple:
    """Whole games, epsilon-greedy, seeded apart from training; their unclipped scores (and None: no successes)."""
    device = next(q_network.parameters()).device
    env = make_env(env_id, sticky, "rgb_array" if video_dir else None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    returns, total = [], 0.0
    while len(returns) < episodes:
        greedy = int(q_network(torch.as_tensor(obs, device=device)[None]).argmax(1).item())
        action = int(rng.integers(env.action_space.n)) if rng.random() < epsilon else greedy
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            returns.append(total)
            total = 0.0
            obs, _ = env.reset()
    env.close()
    return returns, None


def fail(flag: str, message: str):
    print(f"error: {flag}: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_args(args, make, positive: str = "", fraction: str = "", non_negative: str = "") -> gym.Env:
    """Flags in their ranges, then env = make() (gymnasium names what is wrong) and --capture-video's packages."""
    non_negative += " seed eval_episodes checkpoint_every torch_threads"
    ranges = [("positive", positive, lambda v: v > 0), ("in [0, 1]", fraction, lambda v: 0 <= v <= 1)]
    for valid, names, within in [*ranges, ("0 or more", non_negative, lambda v: v >= 0)]:
        for name in (name for name in names.split() if not within(getattr(args, name))):
            fail("--" + name.replace("_", "-"), f"must be {valid}, got {getattr(args, name)}")
    if (args.capture_video or args.evaluate) and args.eval_episodes == 0:
        fail("--eval-episodes", "--capture-video and --evaluate run evaluation episodes: give at least 1")
    if args.track and importlib.util.find_spec("wandb") is None:
        fail("--track", "needs wandb: pip install wandb (then wandb login, or WANDB_MODE=offline to keep runs on disk)")
    try:
        env = make()  # gymnasium also imports the module of a "module:EnvId"
    except (gym.error.Error, ImportError) as e:
        fail("--env-id", f"{e}" + (" A package's id: module:EnvId" if isinstance(e, gym.error.UnregisteredEnv) else ""))
    missing = [] if importlib.util.find_spec("moviepy") or not args.capture_video else ["moviepy"]
    try:
        if args.capture_video and os.environ.setdefault("SDL_VIDEODRIVER", "dummy"):  # else SDL prints "error:" lines
            with make(render_mode="rgb_array") as video_env:
                video_env.reset(seed=0)
                video_env.render()
    except (gym.error.DependencyNotInstalled, TypeError) as e:  # TypeError: a constructor without render_mode
        if not isinstance(e, gym.error.DependencyNotInstalled) or importlib.util.find_spec("pygame"):
            fail("--capture-video", f"the environment cannot render: {e}")
        missing.append("pygame")
    if missing:
        fail("--capture-video", f"needs {' and '.join(missing)} to record videos: pip install {' '.join(missing)}")
    return env


def setup_torch(seed: int, cuda: bool, torch_threads: int, deterministic: bool) -> torch.device:
    torch.set_num_threads(torch_threads or torch.get_num_threads())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if cuda and torch.cuda.is_available() else "cpu")


def open_run(args, run_dir: str | None = None, resumed_at: int | None = None) -> SummaryWriter:
    """Says first where it writes: a resumed run's folder (purged after resumed_at), else a new one; --track: W&B."""
    exp_name, unix_time = args.exp_name + ("-eval" if args.evaluate else ""), int(time.time())
    while run_dir is None or (resumed_at is None and os.path.exists(run_dir)):  # never an earlier run's folder
        run_dir = f"runs/{re.sub('[/:]', '-', args.env_id)}__{exp_name}__{args.seed}__{unix_time}"  # portable
        unix_time += 1
    print(f"run folder: {run_dir}" + (f" (evaluating {args.evaluate})" if args.evaluate else ""))
    if args.track:  # in ./wandb: inside runs/, TensorBoard would show its copy of the curves too
        name, wandb = os.path.basename(run_dir), importlib.import_module("wandb")  # the id: resumed, the same W&B run
        run = {"name": name, "id": re.sub(r"[^\w-]", "-", name), "resume": "allow", "sync_tensorboard": True}
        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=vars(args), **run)
    writer = SummaryWriter(run_dir, purge_step=None if resumed_at is None else resumed_at + 1)
    table = "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
    return writer


class ProgressReport:
    """A rich progress bar on a terminal (bar.stop() ends it), a plain line every 10% otherwise, or nothing."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.enabled, self.next_line = total, enabled, start
        columns = [*Progress.get_default_columns(), TextColumn("{task.fields[sps]} SPS, return {task.fields[ret]}")]
        self.bar = Progress(*columns, disable=not (enabled and sys.stdout.isatty()))
        self.task = self.bar.add_task("steps", total=total, completed=start, sps=0, ret="-")
        self.bar.start()

    def update(self, step: int, sps: int, recent: deque):
        ret = f"{sum(recent) / len(recent):.1f}" if recent else "-"  # called every step: np.mean would copy
        self.bar.update(self.task, completed=step, sps=sps, ret=ret)
        if self.bar.disable and self.enabled and step >= self.next_line:
            print(f"step {step}/{self.total} | {sps} SPS | ETA {(self.total - step) / max(sps, 1):.0f}s | return {ret}")
            self.next_line += self.total // 10


def catch_stop_signals(catch: bool = True) -> dict:
    stop = {"signal": None}  # set by SIGINT and SIGTERM: the loop checkpoints, exits 130/143; catch=False: defaults
    for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        signal.signal(signum, (lambda received, _frame: stop.update(signal=received)) if catch else default)
    return stop


def checkpoint_due(stop: dict, every: int, before: int, after: int, end: int) -> bool:
    return stop["signal"] is not None or (every > 0 and (after // every > before // every or after >= end))


def write_checkpoint(path: str, args, script: str, modules: dict, state: dict):
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    networks = {name: module.state_dict() for name, module in modules.items()}
    torch.save({"args": vars(args), "script": script, "rng": rng} | networks | state, path + ".tmp")
    os.replace(path + ".tmp", path)


def restore(checkpoint: dict | None, modules: dict, state: dict, rng: bool = True) -> dict:
    """`state` for a new run; a resumed one's by name (older files: the new-run value), `modules` and rng loaded."""
    for name, module in modules.items() if checkpoint else ():
        module.load_state_dict(checkpoint[name])
    if checkpoint and rng:
        random.setstate(checkpoint["rng"]["python"])
        np.random.set_state(checkpoint["rng"]["numpy"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
    return {key: checkpoint.get(key, fresh) for key, fresh in state.items()} if checkpoint else state


def load_run(args, script: str, schedules: str = "") -> tuple:
    """The checked file of --resume or --evaluate and the saved run's flags (a newer one: its default), but `now`'s."""
    path, flag = (args.resume, "--resume") if args.resume else (args.evaluate, "--evaluate")
    if args.resume and args.evaluate:
        fail("--evaluate", "evaluates a saved model without training; leave out --resume")
    if path is None:
        return args, None
    valid = f"valid: a {'model.pt or ' if args.evaluate else ''}checkpoint.pt of {script}"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)  # mmap: a big replay
    except Exception as e:  # noqa: BLE001 (whatever fails to read it: missing, truncated, not torch.save)
        fail(flag, f"{path!r} is not a readable checkpoint ({type(e).__name__}); {valid}")
    owner = saved.get("script") if isinstance(saved, dict) else None
    if owner != script or (args.resume and "global_step" not in saved):
        fail(flag, f"{path!r} is {'a model.pt' if owner == script else f'a file of {owner}'}; {valid}")
    given = {a[2:].split("=")[0].replace("-", "_").removeprefix("no_") for a in sys.argv[1:] if a[:2] == "--"}
    now = "resume evaluate cuda torch_threads progress eval_episodes eval_epsilon capture_video checkpoint_replay"
    now = {*now.split(), "track", "wandb_project_name", "wandb_entity"}  # how to run it now
    now |= given & {"total_timesteps", "checkpoint_every", "save_model"}  # given: a new length extends the run
    kept = {f.name: saved["args"].get(f.name, f.default) for f in dataclasses.fields(args) if f.init}
    kept = {name: value for name, value in kept.items() if name not in now}
    if ignored := [name for name in kept if name in given and kept[name] != getattr(args, name)]:
        print(f"note: {', '.join('--' + n.replace('_', '-') for n in ignored)} ignored: the saved run keeps its own")
    args, step, was = dataclasses.replace(args, **kept), saved.get("global_step", 0), saved["args"]["total_timesteps"]
    if args.resume and step >= args.total_timesteps:  # the run's folder stays as it was
        print(f"resume: step {step} of {args.total_timesteps}, already the end: nothing to train")
        raise SystemExit(0)
    if args.resume:
        change = f"; --total-timesteps changes the run's length from {was}: {schedules}"
        print(f"resume: step {step} of {args.total_timesteps}" + (change if args.total_timesteps != was else ""))
    return args, saved


def finish_run(args, script: str, writer: SummaryWriter, stop: dict, networks: dict, evaluation, summary=()) -> tuple:
    """After the loop (summary: global_step, steps, seconds, recent returns, extra) or --evaluate: model.pt, eval."""
    run_dir, returns, successes = writer.log_dir, [], None
    saved = [f"{run_dir}/checkpoint.pt"] if stop["signal"] or (args.checkpoint_every and summary) else []
    if stop["signal"] is not None:
        print(f"stopped by signal {stop['signal']}; continue with --resume {saved[0]}")
    elif args.save_model and summary:
        saved.append(f"{run_dir}/model.pt")
        write_checkpoint(saved[-1], args, script, networks, {})  # the networks as evaluated below
    if stop["signal"] is None and args.eval_episodes > 0:
        saved += [f"{run_dir}/videos"] if args.capture_video else []
        returns, successes = evaluation(video_dir=saved[-1] if args.capture_video else None)
        for i, r in enumerate(returns):
            writer.add_scalar("eval/episodic_return", r, i)
            if successes:
                writer.add_scalar("eval/success_rate", successes[i], i)
        rate = f", success rate {np.mean(successes):.2f}" if successes else ""
        print(f"eval: mean return {np.mean(returns):.1f} over {len(returns)} episodes of the evaluation policy{rate}")
    writer.close()
    if args.track:
        importlib.import_module("wandb").finish()
    if summary:
        global_step, steps, seconds, recent, extra = summary
        mean = f"{np.mean(recent):.1f} over the last {len(recent)} episodes" if recent else "- (no episode ended)"
        print(f"summary: step {global_step}, {steps} steps in {seconds:.1f} s ({int(steps / seconds)} SPS); ", end="")
        print(f"mean training return {mean}{extra}")
    print("".join(f"  saved: {path}\n" for path in saved) + f"  tensorboard --logdir {run_dir}")
    return returns, successes


if __name__ == "__main__":
    try:
        sys.exit(128 + signum if (signum := main(tyro.cli(Args))["signal"]) else 0)  # 130, 143: SIGINT, SIGTERM
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (evaluation): nothing to save
        print("stopped by Ctrl-C", file=sys.stderr)
        sys.exit(130)
