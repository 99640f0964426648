"""DQN from pixels (Mnih et al. 2015): a Nature CNN Q-network, experience replay and a target network.

A network Q_theta(s, .) maps a stack of the last 4 preprocessed frames to one value per action. The agent acts
epsilon-greedily (epsilon decays linearly from start_e to end_e), stores every transition (s, a, r, s') in a
replay memory, and every train_frequency steps takes one Adam step on a uniform minibatch of it:

    y = r + gamma * (1 - terminated) * max_a' Q_target(s', a')                     (DQN target)
    y = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q_theta(s', a'))    (--double-q)
    L = mean( huber(Q_theta(s, a) - y) )        Huber: squared below 1, linear above (the paper's error clip)

Q_target is a copy of Q_theta refreshed every target_network_frequency steps (tau = 1), or moved towards it
by Polyak averaging (tau < 1). Replay breaks the correlation of consecutive frames; the frozen target keeps
y from chasing Q. Papers: Mnih et al. 2015, "Human-level control through deep reinforcement learning",
Nature 518:529; van Hasselt et al. 2016, "Deep RL with double Q-learning", arXiv:1509.06461.

Departures from the paper (the defaults are those of CleanRL's reproduction; the paper's values are in the
flags' docs): Adam at 1e-4 instead of RMSProp at 2.5e-4; the target refreshed every 1,000 steps instead of
every 10,000 updates; epsilon to 0.01 over 10% of the run instead of to 0.1 over 1M frames; learning from
80k steps instead of 50k. --loss mse gives CleanRL's squared loss.

Preprocessing (DeepMind), written out as gymnasium wrappers in make_env: up to 30 no-ops at reset, each
action repeated for 4 frames with the max of the last two (sprites that flicker stay visible), 84x84
grayscale, the last 4 frames stacked (zeros before the episode's first). A lost life is terminal for
learning but the game goes on; rewards are clipped to their sign for learning; the return logged is the
real, unclipped score of the whole game. --sticky-actions repeats the previous action with probability 0.25
at every frame (the v5 protocol of Machado et al. 2018, arXiv:1709.06009). In games that wait for FIRE
(Breakout, ...), FIRE is pressed at reset and after every lost life, in training and in evaluation, as
CleanRL and Stable-Baselines3 do. This departs from the Nature paper, which pressed nothing: a greedy
policy that never chooses FIRE would wait, and an evaluation game stall, until the 108,000-frame limit.

Replay memory. Each 84x84 frame is stored once, as uint8, and the 4-frame stacks of s and s' are rebuilt
when sampled: 7.06 GB for 1M transitions instead of 8 frames (56 GB) per transition. An episode's true
final frame gets its own slot (not a transition, never sampled), so a time-limit truncation bootstraps
from the real last observation; a termination (game over or lost life) never bootstraps. Stacks are padded
with zeros before an episode's first frame, exactly as the environment's own stacks, and never reach
across the write cursor.

Episode boundaries. Environments reset inside the step that ends an episode (gymnasium's SAME_STEP
autoreset); the true last observation is info["final_obs"]. Truncation (108,000 frames, 30 minutes of
play) bootstraps from it; termination does not.

Usage:
    python dqn_atari.py --env-id BreakoutNoFrameskip-v4
    python dqn_atari.py --env-id PongNoFrameskip-v4 --double-q --checkpoint-every 500000
    python dqn_atari.py --resume runs/PongNoFrameskip-v4__dqn_atari__1__1700000000/checkpoint.pt
    python dqn_atari.py --resume runs/.../checkpoint.pt --total-timesteps 20000000   # extend; epsilon's schedule stays
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
import difflib
import importlib.util
import os
import random
import re
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
import tyro
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.tensorboard import SummaryWriter

gym.register_envs(ale_py)


# 2. Args
@dataclass
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
    """include the replay memory in checkpoints (up to 7 GB); without it a resumed run refills it first"""
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
    """Atari id: ALE/Breakout-v5 or BreakoutNoFrameskip-v4 (the same game, preprocessed the same way here)"""
    total_timesteps: int = 10_000_000
    """total agent steps, all environments together (4 frames each; paper: 50M)"""
    num_envs: int = 1
    """environments stepped together, one replay memory (paper: 1)"""
    sticky_actions: bool = False
    """repeat the previous action with probability 0.25 at every frame (v5 protocol; paper: off)"""
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
def td_target(rewards, terminated, next_q_target, next_q_online, gamma: float, double_q: bool) -> torch.Tensor:
    """rewards, terminated (B,); next_q_target, next_q_online (B, A) at s'. Returns y (B,):
    r + gamma (1 - terminated) max_a' Q_target(s', a'), or with double_q Q_target(s', argmax_a' Q_online(s', a'))."""
    if double_q:
        next_value = next_q_target.gather(1, next_q_online.argmax(1, keepdim=True)).squeeze(1)
    else:
        next_value = next_q_target.max(1).values
    return rewards + gamma * (~terminated).to(rewards.dtype) * next_value


def dqn_loss(q_network, target_network, b: dict, gamma: float, double_q: bool, loss: str) -> tuple:
    """The TD loss (loss: "huber" or "mse") of a minibatch b (obs, next_obs (B, 4, 84, 84); actions, rewards,
    terminated (B,)), and Q_theta(s, a) (B,)."""
    with torch.no_grad():
        next_q_online = q_network(b["next_obs"]) if double_q else None
        y = td_target(b["rewards"], b["terminated"], target_network(b["next_obs"]), next_q_online, gamma, double_q)
    q_taken = q_network(b["obs"]).gather(1, b["actions"].unsqueeze(1)).squeeze(1)
    td_loss = F.smooth_l1_loss(q_taken, y) if loss == "huber" else F.mse_loss(q_taken, y)
    return td_loss, q_taken


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """From start at step 0 to end at step `duration`, linearly, then constant."""
    return start + (end - start) * t / duration if t < duration else end


# 5. Training loop
def main(args: Args) -> dict:
    # SETUP
    if args.evaluate is not None:
        return evaluate_saved(args, "dqn_atari.py", saved_evaluation)
    checkpoint = load_checkpoint(args.resume, "dqn_atari.py") if args.resume else None
    args = resume_args(args, checkpoint["args"]) if checkpoint else args  # the run's own flags (resume_args)
    obs_space, action_space = validate(args)
    num_envs = args.num_envs
    say_rounded(args.total_timesteps, -(-args.total_timesteps // num_envs) * num_envs, "steps of all envs")
    device = setup_torch(args.seed, args.cuda, args.torch_threads, args.torch_deterministic)

    q_network = QNetwork(action_space.n).to(device)
    target_network = QNetwork(action_space.n).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate)
    replay = ReplayMemory(args.buffer_size, num_envs, obs_space.shape[1:], obs_space.shape[0], args.seed)
    modules = {"q_network": q_network, "target_network": target_network, "optimizer": optimizer}
    state = {"global_step": 0, "num_updates": 0, "schedule_timesteps": args.total_timesteps, "run_dir": None}
    global_step, num_updates, schedule_timesteps, run_dir = restore(checkpoint, modules, state)
    explore_steps = int(args.exploration_fraction * schedule_timesteps)  # of the run's first length, whatever it is now
    if checkpoint is not None:
        if checkpoint["replay"] is not None:
            replay.load_state_dict(checkpoint["replay"])
            replay.new_episodes()  # the environments restart from new games: their state is not saved
        schedules = f"epsilon keeps its schedule, {args.end_e} from step {explore_steps} on"
        say_where_resumed(global_step, args.total_timesteps, checkpoint["args"]["total_timesteps"], schedules)
        del checkpoint
    run_dir = run_dir or new_run_dir(args.env_id, args.exp_name, args.seed)
    writer = open_run(args, run_dir, resumed_at=global_step if args.resume else None)
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
                q = q_network(torch.as_tensor(obs[greedy], device=device))
            actions[greedy] = q.argmax(1).cpu().numpy()

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
                b = replay.sample(args.batch_size, device)
                td_loss, q_taken = dqn_loss(q_network, target_network, b, args.gamma, args.double_q, args.loss)
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
            state = {"global_step": global_step, "num_updates": num_updates, "schedule_timesteps": schedule_timesteps}
            state |= {"run_dir": run_dir, "replay": replay.state_dict() if args.checkpoint_replay else None}
            write_checkpoint(os.path.join(run_dir, "checkpoint.pt"), args, "dqn_atari.py", modules, state)
        if stop["signal"] is not None:
            break
    release_stop_signals()
    progress.close()
    envs.close()

    # TEARDOWN
    seed = args.seed + 10_000
    evaluation = partial(
        evaluate, q_network, args.env_id, args.sticky_actions, args.eval_episodes, args.eval_epsilon, seed
    )
    eval_returns, _, saved = finish_training(args, "dqn_atari.py", stop, {"q_network": q_network}, evaluation, writer)
    close_run(writer, args.track)
    print_summary(run_dir, global_step, global_step - start_step, time.time() - start_time, recent_returns, saved)
    result = {"run_dir": run_dir, "global_step": global_step, "episodic_returns": episodic_returns, "sps": sps}
    result |= {"episodic_steps": episodic_steps, "eval_returns": eval_returns, "signal": stop["signal"]}
    result |= {"interrupted": stop["signal"] is not None, "num_updates": num_updates, "replay": replay}
    result |= {"q_network": q_network, "target_network": target_network, "optimizer": optimizer}
    result["final_return"] = float(np.mean(recent_returns)) if recent_returns else float("nan")
    return result


# 6. Environment
def atari_game(env_id: str) -> str | None:
    """'ALE/Pong-v5' or 'PongNoFrameskip-v4' -> 'Pong'; None for other ids."""
    match = re.fullmatch(r"ALE/(\w+)-v5|(\w+)NoFrameskip-v4", env_id)
    return None if match is None else match.group(1) or match.group(2)


class NoopReset(gym.Wrapper):
    """At reset, take a random number (1 to noop_max) of no-op actions: varied starting states."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        self.noop_max = noop_max

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for _ in range(self.unwrapped.np_random.integers(1, self.noop_max + 1)):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class MaxAndSkip(gym.Wrapper):
    """Repeat each action for `skip` frames, sum their rewards, return the max of the last two frames."""

    def __init__(self, env: gym.Env, skip: int = 4):
        super().__init__(env)
        self.skip = skip

    def step(self, action):
        total, last_two = 0.0, []
        for _ in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += reward
            last_two = [*last_two[-1:], obs]
            if terminated or truncated:
                break
        return np.maximum(last_two[0], last_two[-1]), total, terminated, truncated, info


class FireOnStart(gym.Wrapper):
    """Press FIRE at reset and after every lost life, in games that wait for it to go on (Breakout, ...): a
    policy that never chooses FIRE would otherwise wait until the time limit. The press after a lost life is
    part of the agent's step: its reward is added, its end of game or truncation is reported."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        self.lives = info["lives"]
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if info["lives"] < self.lives and not (terminated or truncated):
            obs, fire_reward, terminated, truncated, info = self.env.step(1)
            reward += fire_reward
        self.lives = info["lives"]
        return obs, reward, terminated, truncated, info


class LifeLoss(gym.Wrapper):
    """info["life_lost"]: a life was lost in this step but the game goes on (terminal for learning only)."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.lives = info["lives"]
        return obs, {**info, "life_lost": False}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        life_lost = info["lives"] < self.lives and not (terminated or truncated)
        self.lives = info["lives"]
        return obs, reward, terminated, truncated, {**info, "life_lost": life_lost}


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights that average the input cells each output cell covers (area interpolation)."""
    edges = np.linspace(0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0, None)
    return (overlap / (hi - lo)).astype(np.float32)


class Resize84(gym.ObservationWrapper):
    """(210, 160) grayscale -> (84, 84) uint8 by area averaging, as OpenCV's INTER_AREA (what CleanRL and SB3 call)
    does it, written as two small matrix products, rows @ frame @ cols.T: no OpenCV package for one resize."""

    def __init__(self, env: gym.Env, size: int = 84):
        super().__init__(env)
        h, w = env.observation_space.shape
        self.rows, self.cols = area_matrix(h, size), area_matrix(w, size).T
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, obs):
        return np.rint(self.rows @ obs.astype(np.float32) @ self.cols).astype(np.uint8)


class FrameStack(gym.Wrapper):
    """Observation (k, 84, 84): the last k frames, oldest first, zeros before the episode's first frame."""

    def __init__(self, env: gym.Env, k: int = 4):
        super().__init__(env)
        self.frames = np.zeros((k, *env.observation_space.shape), np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, self.frames.shape, np.uint8)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.frames[:] = 0
        self.frames[-1] = obs
        return self.frames.copy(), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames[:-1] = self.frames[1:]
        self.frames[-1] = obs
        return self.frames.copy(), reward, terminated, truncated, info


def make_env(env_id: str, sticky: bool, render: bool = False) -> gym.Env:
    """One Atari game with the DeepMind preprocessing. The emulator is asked for every frame (frameskip 1) in
    grayscale; games end after 108,000 frames (truncation)."""
    options = {"obs_type": "grayscale", "max_num_frames_per_episode": 108_000, "full_action_space": False}
    options |= {"repeat_action_probability": 0.25 if sticky else 0.0, "render_mode": "rgb_array" if render else None}
    env = gym.make(f"ALE/{atari_game(env_id)}-v5", frameskip=1, **options)
    env = NoopReset(env, noop_max=30)
    env = MaxAndSkip(env, skip=4)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireOnStart(env)
    env = LifeLoss(env)  # outside FireOnStart: it sees the lives before a loss and after the FIRE that follows
    return FrameStack(Resize84(env), k=4)


def make_envs(env_id: str, num_envs: int, sticky: bool = False) -> gym.vector.SyncVectorEnv:
    same_step = gym.vector.AutoresetMode.SAME_STEP  # see the header
    return gym.vector.SyncVectorEnv([lambda: make_env(env_id, sticky)] * num_envs, autoreset_mode=same_step)


# 7. Storage: frame replay; each frame stored once, stacks rebuilt at sampling
class ReplayMemory:
    """Transitions of num_envs environments, one column of capacity // num_envs slots each. Slot t of a column
    holds the newest frame of s_t with a_t, r_t (clipped), terminated_t and first_t (s_t began an episode).
    s' of slot t is the stack ending at slot t + 1: the next state, or after an episode's last step the true
    final frame in a slot marked `last`, which is not a transition and is never sampled."""

    def __init__(self, capacity: int, num_envs: int, frame_shape: tuple, stack: int, seed: int):
        self.cap, self.num_envs, self.stack = capacity // num_envs, num_envs, stack
        E = num_envs
        self.frames = np.zeros((self.cap, E, *frame_shape), np.uint8)  # untouched pages cost no memory
        self.actions = np.zeros((self.cap, E), np.uint8)  # Atari has at most 18 actions
        self.rewards = np.zeros((self.cap, E), np.float32)
        self.terminated = np.zeros((self.cap, E), bool)
        self.first = np.zeros((self.cap, E), bool)
        self.last = np.zeros((self.cap, E), bool)
        self.pos = np.zeros(E, np.int64)  # next slot to write, per column
        self.full = np.zeros(E, bool)
        self.next_first = np.ones(E, bool)  # the next state written begins an episode
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
        for e in range(self.num_envs):
            if self.full[e] or self.pos[e] > 0:
                self.last[self.pos[e] - 1, e] = True
        self.next_first[:] = True

    def sample_indices(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n uniform (slot, column) pairs whose s and s' stacks are complete: not the newest slot (no s' yet),
        not the k - 1 oldest when full (their history was overwritten), not a `last` slot."""
        slots, cols = np.empty(n, np.int64), np.empty(n, np.int64)
        todo = np.arange(n)
        while len(todo):
            e = self.rng.integers(0, self.num_envs, len(todo))
            pos, full = self.pos[e], self.full[e]
            span = np.where(full, self.cap - self.stack, pos - 1)  # slots to choose from
            i = np.where(full, pos + self.stack - 1, 0) + (self.rng.random(len(todo)) * span).astype(np.int64)
            slots[todo], cols[todo] = i % self.cap, e
            todo = todo[self.last[slots[todo], e]]
        return slots, cols

    def stacks(self, slots: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (B, k, 84, 84) stacks of s and s' for the given slots: k + 1 frames read once, frames from
        before the episode's first set to zero."""
        k = self.stack
        window = (slots[:, None] + np.arange(-k + 1, 2)) % self.cap  # slots t-k+1 .. t+1
        frames = self.frames[window, cols[:, None]]  # (B, k + 1, 84, 84)
        first = self.first[window, cols[:, None]]
        # frame j belongs to s_t's episode unless an episode starts at one of the slots j+1 .. t
        started_later = np.logical_or.accumulate(first[:, k - 1 : 0 : -1], axis=1)[:, ::-1]
        frames[:, : k - 1] *= ~started_later[:, :, None, None]
        return frames[:, :k], frames[:, 1:]

    def sample(self, n: int, device) -> dict:
        slots, cols = self.sample_indices(n)
        obs, next_obs = self.stacks(slots, cols)
        b = {"obs": obs, "next_obs": next_obs, "actions": self.actions[slots, cols].astype(np.int64)}
        b |= {"rewards": self.rewards[slots, cols], "terminated": self.terminated[slots, cols]}
        return {k: torch.as_tensor(v, device=device) for k, v in b.items()}

    def state_dict(self) -> dict:
        """Arrays as tensors sharing their memory: torch.save writes them without a copy."""
        arrays = ("frames", "actions", "rewards", "terminated", "first", "last", "pos", "full", "next_first")
        return {**{k: torch.from_numpy(getattr(self, k)) for k in arrays}, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict):
        for k, v in state.items():
            if k == "rng":
                self.rng.bit_generator.state = v
            else:
                np.copyto(getattr(self, k), v.numpy())


# 8. Plumbing
def validate(args: Args) -> tuple[gym.Space, gym.Space]:
    """Check every flag before any work; return the single observation and action spaces."""
    sizes = "total_timesteps num_envs buffer_size batch_size train_frequency target_network_frequency"
    check_ranges(
        args, positive=sizes + " learning_rate", fraction="gamma start_e end_e exploration_fraction eval_epsilon"
    )
    if not 0.0 < args.tau <= 1.0:
        fail("--tau", f"must be in (0, 1], got {args.tau}")
    if args.batch_size > args.buffer_size:
        fail("--batch-size", f"{args.batch_size} is larger than the replay (--buffer-size {args.buffer_size})")
    if args.learning_starts < args.batch_size:
        fail("--learning-starts", f"must be at least --batch-size ({args.batch_size}), got {args.learning_starts}")
    if args.learning_starts > args.buffer_size:
        fail("--learning-starts", f"must be at most --buffer-size ({args.buffer_size}), got {args.learning_starts}")
    if args.learning_starts < 2 * args.num_envs:
        fail("--learning-starts", f"must be at least 2 * --num-envs ({2 * args.num_envs}), got {args.learning_starts}")
    if args.buffer_size // args.num_envs < 2 * 4:
        fail("--buffer-size", f"must hold at least 8 transitions per environment, got {args.buffer_size}")
    if args.learning_starts + args.train_frequency > args.total_timesteps:
        fail(
            "--learning-starts",
            f"{args.learning_starts} leaves no gradient step in a run of --total-timesteps {args.total_timesteps} "
            f"(one every --train-frequency {args.train_frequency} steps from then on): lower it or train longer",
        )
    check_run_flags(args)
    game = atari_game(args.env_id)
    if game is None or f"ALE/{game}-v5" not in gym.registry:
        atari = [k for k in gym.registry if atari_game(k)]
        close = difflib.get_close_matches(args.env_id, atari, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "valid: Atari ids such as BreakoutNoFrameskip-v4"
        what = "DQN from pixels needs an Atari id" if game is None else f"no Atari game {game!r}"
        fail("--env-id", f"{what}, got {args.env_id!r}; {hint}")
    env = make_env(args.env_id, args.sticky_actions)
    spaces = env.observation_space, env.action_space
    env.close()
    if not isinstance(spaces[1], gym.spaces.Discrete):
        fail("--env-id", f"{args.env_id} has action space {spaces[1]}; DQN needs a Discrete one")
    if args.capture_video:
        check_video(lambda: make_env(args.env_id, args.sticky_actions, render=True))
    return spaces


def evaluate(q_network, env_id: str, sticky: bool, episodes: int, epsilon: float, seed: int, video_dir=None) -> tuple:
    """Whole games, epsilon-greedy; returns their unclipped scores (and None: Atari has no success to report)."""
    device = next(q_network.parameters()).device
    env = make_env(env_id, sticky, render=video_dir is not None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    returns, total = [], 0.0
    while len(returns) < episodes:
        if rng.random() < epsilon:
            action = int(rng.integers(env.action_space.n))
        else:
            with torch.no_grad():
                action = int(q_network(torch.as_tensor(obs, device=device)[None]).argmax(1).item())
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            returns.append(total)
            total = 0.0
            obs, _ = env.reset()
    env.close()
    return returns, None


def saved_evaluation(args: Args, saved: dict, device):
    """--evaluate: the saved Q-network, for evaluate_saved; epsilon-greedy with --eval-epsilon."""
    _, action_space = validate(args)
    q_network = QNetwork(action_space.n).to(device)
    q_network.load_state_dict(saved["q_network"])
    seed = args.seed + 10_000
    return partial(evaluate, q_network, args.env_id, args.sticky_actions, args.eval_episodes, args.eval_epsilon, seed)


def fail(flag: str, message: str):
    """Bad input: one line naming the flag, exit status 2, no traceback."""
    print(f"error: {flag}: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_env_id(env_id: str, supported: list[str]):
    """--env-id: a registered id, or gymnasium's "module:EnvId" form, whose module is imported to register it.
    A typo is answered with the closest of the ids this script supports."""
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            fail("--env-id", f"cannot import {module!r} for {env_id!r} (is its folder on PYTHONPATH?): {e}")
    if name not in gym.registry:
        close = difflib.get_close_matches(name, supported, n=3)
        fail("--env-id", f"unknown environment {env_id!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))


def check_ranges(args, positive: str = "", fraction: str = "", non_negative: str = ""):
    """Fail on the first flag out of its range; each argument names fields, space-separated: positive (> 0),
    fraction (in [0, 1]) and non_negative (0 or more)."""
    ranges = [
        (positive, "positive", lambda v: v > 0),
        (fraction, "in [0, 1]", lambda v: 0 <= v <= 1),
        (non_negative, "0 or more", lambda v: v >= 0),
    ]
    for names, valid, within in ranges:
        for name in names.split():
            if not within(getattr(args, name)):
                fail("--" + name.replace("_", "-"), f"must be {valid}, got {getattr(args, name)}")


def check_video(make_video_env):
    """--capture-video, before any work: every package recording needs, named in one line (moviepy writes the
    files; the renderer may need pygame), then one frame rendered as a check. Frames are drawn off-screen, so SDL
    gets its dummy video driver: without a display it would print stray "error:" lines of its own."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    missing = [] if importlib.util.find_spec("moviepy") else ["moviepy"]
    problem = None
    try:
        with make_video_env() as env:
            env.reset(seed=0)
            env.render()
    except gym.error.DependencyNotInstalled as e:  # pygame, or another package of the renderer
        missing, problem = (missing + ["pygame"], None) if importlib.util.find_spec("pygame") is None else (missing, e)
    except TypeError as e:  # a user's environment whose constructor takes no render_mode
        problem = e
    if missing:
        fail("--capture-video", f"needs {' and '.join(missing)} to record videos: pip install {' '.join(missing)}")
    if problem is not None:
        fail("--capture-video", f"the environment cannot render: {problem}")


def check_run_flags(args):
    """The flags of the user's loop, the same in every script: seeds, evaluation, checkpoints, --track (which
    needs wandb, an optional package)."""
    check_ranges(args, non_negative="seed eval_episodes checkpoint_every torch_threads")
    if args.capture_video and args.eval_episodes == 0:
        fail("--capture-video", "records the evaluation episodes, so it needs --eval-episodes of at least 1")
    if args.evaluate is not None and args.eval_episodes == 0:
        fail("--eval-episodes", "--evaluate runs evaluation episodes only: give at least 1")
    if args.evaluate is not None and args.resume is not None:
        fail("--evaluate", "evaluates a saved model without training; leave out --resume")
    if args.track and importlib.util.find_spec("wandb") is None:
        fail("--track", "needs wandb: pip install wandb (then wandb login, or WANDB_MODE=offline to keep runs on disk)")


def new_run_dir(env_id: str, exp_name: str, seed: int) -> str:
    """runs/{env_id}__{exp_name}__{seed}__{unix_time}, a folder no earlier run used. The "/" of a namespaced id
    (ALE/Pong-v5) becomes "-", so that every run is one folder directly under runs/."""
    unix_time = int(time.time())
    while os.path.exists(run_dir := f"runs/{env_id.replace('/', '-')}__{exp_name}__{seed}__{unix_time}"):
        unix_time += 1  # never write into an earlier run's folder
    return run_dir


def open_run(args, run_dir: str, resumed_at: int | None = None, note: str = "") -> SummaryWriter:
    """Say where the run writes (its first line); open its TensorBoard writer, the flags as a table (TEXT tab),
    dropping what an earlier process logged after resumed_at, the checkpoint's step. --track: W&B gets each scalar
    as it is written, in ./wandb (inside runs/, TensorBoard would show its copy of the curves too)."""
    print(f"run folder: {run_dir}{note}")
    if args.track:
        import wandb

        name = os.path.basename(run_dir)  # and the id: a resumed run continues its W&B run
        run = {"name": name, "id": re.sub(r"[^\w-]", "-", name), "resume": "allow", "sync_tensorboard": True}
        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=vars(args), **run)
    writer = SummaryWriter(run_dir, purge_step=None if resumed_at is None else resumed_at + 1)
    table = "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
    return writer


def close_run(writer: SummaryWriter, track: bool):
    """Flush TensorBoard's writer; with --track, send what is left and close the Weights & Biases run."""
    writer.close()
    if track:
        import wandb

        wandb.finish()


class ProgressReport:
    """A rich progress bar on a terminal, a plain line every 10% otherwise, nothing with --no-progress."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.enabled, self.next_line = total, enabled, start
        self.bar = None
        if enabled and sys.stdout.isatty():
            columns = [
                TextColumn("[bold]steps"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[sps]} SPS"),
            ]
            columns += [TimeRemainingColumn(), TextColumn("return {task.fields[ret]}")]
            self.bar = Progress(*columns)
            self.task = self.bar.add_task("train", total=total, completed=start, sps=0, ret="-")
            self.bar.start()

    def update(self, step: int, sps: int, recent: deque):
        ret = f"{sum(recent) / len(recent):.1f}" if recent else "-"  # called every step: np.mean would copy
        if self.bar is not None:
            self.bar.update(self.task, completed=step, sps=sps, ret=ret)
        elif self.enabled and step >= self.next_line:
            eta = (self.total - step) / max(sps, 1)
            print(f"step {step}/{self.total} | {sps} SPS | ETA {eta:.0f}s | return {ret}", flush=True)
            self.next_line += self.total // 10

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def say_rounded(total_timesteps: int, steps: int, unit: str):
    """One line when the loop cannot stop at exactly --total-timesteps: the steps it takes instead."""
    if steps != total_timesteps:
        print(f"note: --total-timesteps {total_timesteps} runs as {steps}, a whole number of {unit}")


def multiples_between(before: int, after: int, every: int) -> int:
    """How many multiples of `every` lie in (before, after]: the gradient steps (or target updates) due when
    global_step moves from before to after, one every `every` steps whatever the number of environments."""
    return after // every - before // every


def print_summary(run_dir: str, global_step: int, steps: int, seconds: float, recent: deque, saved: list, extra=""):
    """The last lines of every run, finished or stopped: where it is (global_step), what this process did (steps
    in seconds), the mean of the recent returns, what it saved and how to look at it."""
    sps = int(steps / seconds) if seconds > 0 else 0
    mean = f"{sum(recent) / len(recent):.1f} over the last {len(recent)} episodes" if recent else "- (no episode ended)"
    print(f"summary: step {global_step}, {steps} steps in {seconds:.1f} s ({sps} SPS); mean return {mean}{extra}")
    print_paths(run_dir, saved)


def print_paths(run_dir: str, saved: list):
    """What a run saved, one path a line, and the command that shows its curves."""
    for path in saved:
        print(f"  saved: {path}")
    print(f"  tensorboard --logdir {run_dir}")


def catch_stop_signals() -> dict:
    """SIGINT (Ctrl-C) and SIGTERM only set stop["signal"]: the loop finishes its step, writes the checkpoint and
    summary, and the script exits with 128 + the signal's number (130, 143), as shells and schedulers expect."""
    stop = {"signal": None}
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, _frame: stop.update(signal=received))
    return stop


def release_stop_signals():
    """After the loop: SIGINT and SIGTERM stop the process again (an evaluation that follows has nothing to save)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def exit_status(result: dict) -> int:
    """0 for a run that ended, 128 + the signal's number for one that a signal stopped."""
    return 128 + result["signal"] if result.get("signal") else 0


def setup_torch(seed: int, cuda: bool, torch_threads: int, deterministic: bool) -> torch.device:
    """Seed Python's, NumPy's and torch's random streams; --torch-threads (0: torch's own default) and cudnn's
    determinism. Returns the device to train on: the GPU with --cuda where there is one (under torchrun, this
    process's), else the CPU."""
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    return torch.device(
        f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda and torch.cuda.is_available() else "cpu"
    )


def restore(checkpoint: dict | None, modules: dict, state: dict, rng: bool = True) -> tuple:
    """The loop's state to start from, a tuple in the order of `state`: its values as given for a new run; for a
    resumed one the checkpoint's, with each network and optimizer of `modules` ({name: module}) loaded from it and,
    with rng, Python's, NumPy's and torch's random streams where they were."""
    if checkpoint is None:
        return tuple(state.values())
    for name, module in modules.items():
        module.load_state_dict(checkpoint[name])
    if rng:
        random.setstate(checkpoint["rng"]["python"])
        np.random.set_state(checkpoint["rng"]["numpy"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
    return tuple(checkpoint.get(key, fresh) for key, fresh in state.items())  # older files: the new-run value


def checkpoint_due(stop: dict, every: int, before: int, after: int, end: int) -> bool:
    """Whether the loop writes its checkpoint now, global_step having moved from before to after: when a signal
    asks it to stop, and with --checkpoint-every, at each multiple of it and at the end of the run."""
    return stop["signal"] is not None or (every > 0 and (multiples_between(before, after, every) > 0 or after >= end))


def write_checkpoint(path: str, args, script: str, modules: dict, state: dict):
    """checkpoint.pt: the flags, the state of each network and optimizer of `modules` ({name: module}), the random
    streams and the loop's `state` (what restore reads back)."""
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    networks = {name: module.state_dict() for name, module in modules.items()}
    save_atomically({"args": vars(args), "script": script, "rng": rng} | networks | state, path)


def save_atomically(obj, path: str):
    """Write then rename: a crash mid-write never leaves a broken file in place of the last good one."""
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str, script: str, flag: str = "--resume") -> dict:
    """A file this script saved, else one line naming the flag and exit 2 (nothing is written): --resume takes a
    checkpoint.pt, --evaluate a model.pt or a checkpoint.pt."""
    valid = f"a checkpoint.pt of {script}" if flag == "--resume" else f"a model.pt or checkpoint.pt of {script}"
    if not os.path.isfile(path):
        fail(flag, f"no file at {path!r}; valid: {valid}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)  # mmap: a big replay
    except Exception as e:  # noqa: BLE001 (whatever fails to read it: truncated, corrupt, not torch.save)
        fail(flag, f"{path!r} is not a readable checkpoint ({type(e).__name__}); valid: {valid}")
    owner = checkpoint.get("script") if isinstance(checkpoint, dict) else None
    if owner != script:
        what = f"a file of {owner}" if isinstance(owner, str) else "not a file this script saved"
        fail(flag, f"{path!r} is {what}; valid: {valid}")
    if flag == "--resume" and "global_step" not in checkpoint:
        fail(flag, f"{path!r} is a model.pt, without the training state; valid: {valid}")
    return checkpoint


def resume_args(args: Args, saved: dict) -> Args:
    """The flags of a resumed (or evaluated) run: the saved run's own, except how to run it now (device, output,
    evaluation, tracking), which this command line sets. --total-timesteps, --checkpoint-every and --save-model
    stay the run's own unless given with a value other than their default: a run length given on purpose extends
    (or ends) it. A flag the saved run did not have yet takes its default, which that run ran with."""
    now = "resume evaluate cuda torch_threads progress eval_episodes eval_epsilon capture_video checkpoint_replay"
    now += " track wandb_project_name wandb_entity"
    kept = {}
    for field in dataclasses.fields(Args):
        given = (
            field.name in ("total_timesteps", "checkpoint_every", "save_model")
            and getattr(args, field.name) != field.default
        )
        if field.init and field.name not in now.split() and not given:  # a flag newer than the file: its default
            kept[field.name] = saved.get(field.name, field.default)
    return dataclasses.replace(args, **kept)


def say_where_resumed(global_step: int, total: int, saved_total: int, schedules: str):
    """One line on what a resumed run does: go on to the end of its run, to a new end, or nothing at all."""
    where = f"resume: step {global_step} of {total}"
    if global_step >= total:
        where = f"resume: the checkpoint is at step {global_step}, already the end of a {total}-step run: nothing to"
        where += " train (a larger --total-timesteps extends it)"
    elif total != saved_total:
        where += f"; --total-timesteps changes the run's length from {saved_total}: {schedules}"
    print(where)


def finish_training(args, script: str, stop: dict, networks: dict, evaluation, writer: SummaryWriter) -> tuple:
    """After the loop, in the run folder (writer.log_dir). Stopped by a signal: how to go on. Else --save-model
    (model.pt: the flags and `networks`, loaded back so that what is evaluated is exactly what a user would load)
    and the --eval-episodes episodes of run_evaluation. Returns (eval returns, successes or None, paths saved)."""
    checkpoint_path = os.path.join(writer.log_dir, "checkpoint.pt")
    saved = [checkpoint_path] if stop["signal"] is not None or args.checkpoint_every else []
    if stop["signal"] is not None:
        print(f"stopped by signal {stop['signal']}; continue with --resume {checkpoint_path}")
        return [], None, saved
    if args.save_model:
        model_path = os.path.join(writer.log_dir, "model.pt")
        model = {name: network.state_dict() for name, network in networks.items()}
        save_atomically({"args": vars(args), "script": script} | model, model_path)
        for name, network in networks.items():  # evaluate what a user would load
            network.load_state_dict(torch.load(model_path, map_location="cpu")[name])
        saved.append(model_path)
    if args.eval_episodes == 0:
        return [], None, saved
    returns, successes, videos = run_evaluation(evaluation, args.capture_video, writer)
    return returns, successes, saved + videos


def evaluate_saved(args, script: str, load_evaluation) -> dict:
    """--evaluate: the networks of a model.pt or checkpoint.pt, loaded by load_evaluation(args, saved, device) ->
    evaluation, for --eval-episodes episodes (run_evaluation) in a new run folder {exp_name}-eval. No training."""
    saved = load_checkpoint(args.evaluate, script, "--evaluate")
    args = resume_args(args, saved["args"])  # the saved run's environment and network; how to evaluate from now
    device = setup_torch(args.seed, args.cuda, args.torch_threads, args.torch_deterministic)
    evaluation = load_evaluation(args, saved, device)
    del saved  # a checkpoint's replay
    run_dir = new_run_dir(args.env_id, args.exp_name + "-eval", args.seed)
    writer = open_run(args, run_dir, note=f" (evaluating {args.evaluate})")
    returns, successes, videos = run_evaluation(evaluation, args.capture_video, writer)
    close_run(writer, args.track)
    print_paths(run_dir, videos)
    return {"run_dir": run_dir, "eval_returns": returns, "eval_successes": successes, "global_step": 0, "signal": None}


def run_evaluation(evaluation, capture_video: bool, writer: SummaryWriter) -> tuple:
    """The episodes of evaluation(video_dir) -> (returns, successes or None), with --capture-video into videos/;
    an eval/ scalar for each, one line with their mean. Returns (returns, successes, [the video folder])."""
    video_dir = os.path.join(writer.log_dir, "videos") if capture_video else None
    returns, successes = evaluation(video_dir=video_dir)
    for i, r in enumerate(returns):
        writer.add_scalar("eval/episodic_return", r, i)
        if successes:
            writer.add_scalar("eval/success_rate", successes[i], i)
    rate = f", success rate {sum(successes) / len(successes):.2f}" if successes else ""
    print(f"eval: mean return {np.mean(returns):.1f} over {len(returns)} episodes{rate}")
    return returns, successes, [video_dir] if video_dir else []


if __name__ == "__main__":
    try:
        sys.exit(exit_status(main(tyro.cli(Args))))
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (evaluation): nothing to save
        print("stopped by Ctrl-C", file=sys.stderr)
        sys.exit(130)
