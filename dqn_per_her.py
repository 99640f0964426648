"""DQN with Prioritized Experience Replay and Hindsight Experience Replay, on goal-conditioned tasks.

DQN (as in dqn_atari.py, with an MLP): Q_theta(x, .) over x = [observation, goal], epsilon-greedy acting,
a replay memory, a target network, and one Adam step per train_frequency environment steps on

    y = r + gamma * (1 - terminated) * max_a' Q_target(x', a')     (--double-q: Q_target(x', argmax Q_theta(x', .)))
    L = mean_i( w_i * huber(Q_theta(x_i, a_i) - y_i) )

Prioritized replay (Schaul et al. 2015, arXiv:1511.05952, the proportional variant, on a sum tree): transition i is
drawn with probability P(i) = p_i / sum_j p_j, p_i = (|delta_i| + eps)^alpha, where delta_i is its last TD error
and new transitions get the largest priority seen so far. The bias this adds is undone by importance weights
w_i = (N P(i))^-beta, divided by the batch's largest, with beta annealed linearly from beta0 to 1 over the run.
The paper lowers the learning rate 4x with PER, since its updates are larger.

Hindsight replay (Andrychowicz et al. 2017, arXiv:1707.01495): an episode that missed its goal g still shows how to
reach the goals it did achieve. Each transition (s_t, a_t, s_t+1, g) is stored once, as it happened, when its
episode ends; each time it is sampled, with probability k / (k + 1), its goal is replaced by one achieved in the
same episode (--her-strategy), a fresh goal at every draw (as in the paper's code, OpenAI baselines). The reward is
recomputed with the environment's compute_reward(achieved_goal, new_goal, info), the termination with its
compute_terminated where it has one (gymnasium-robotics' GoalEnv protocol; else terminations are taken as
independent of the goal). A priority is the TD error of the goal last sampled with. A relabelled goal is only as
far from the state as its episode went: epsilon decays over half the run, random flips carrying episodes far.

Stability. Every true value (a discounted sum of rewards in [r_min, r_max], possibly cut short by a termination)
lies in [min(0, r_min), max(0, r_max)] / (1 - gamma) ([-1/(1 - gamma), 0] for BitFlip-v0): targets beyond are
errors feeding on themselves. In goal environments y is clipped to it (as the HER paper clips its DDPG targets),
r_min and r_max the rewards the replay has seen, stored or relabelled. benchmarks/README.md measures this clip.

Environments: BitFlip-v0 and BitFlipFixedGoal-v0 (section 6), any gymnasium goal environment (Dict observation with
observation, achieved_goal, desired_goal; a vectorised compute_reward), and with --no-her vector ones. An episode
succeeds where its last info says so (info["is_success"]); where the environment says nothing there is no success
rate: its episodes are not counted. SAME_STEP autoreset, true final observations from info["final_obs"]: a
truncation (time limit) bootstraps from the final observation, a termination does not.

Usage:
    python dqn_per_her.py                                   # DQN + HER, 15 bits, 20k steps: solved by about 10k
    python dqn_per_her.py --n-bits 50 --total-timesteps 120000    # the HER paper's hardest case
    python dqn_per_her.py --env-id CartPole-v1 --no-her --per --total-timesteps 50000
    python dqn_per_her.py --resume runs/.../checkpoint.pt --total-timesteps 40000  # extend; schedules stay
    python dqn_per_her.py --evaluate runs/.../model.pt --eval-episodes 100  # no training: success rate of a model

TensorBoard keys:
    charts/episodic_return    undiscounted return of each finished episode
    charts/episodic_length    its length, environment steps
    charts/success_rate       1 if the episode succeeded, else 0, each episode (where the environment says)
    charts/epsilon            exploration rate
    charts/beta               PER importance-sampling exponent
    charts/SPS                environment steps per second
    losses/td_loss            weighted mean Huber TD loss of the last minibatch
    losses/q_values           mean Q_theta(x, a) of the last minibatch
    eval/episodic_return      return of each evaluation episode (greedy actions)
    eval/success_rate         success of each evaluation episode (where the environment says)
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
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
import tyro
from rich.progress import Progress, TextColumn
from torch import nn
from torch.utils.tensorboard import SummaryWriter


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
    cuda: bool = False
    """use CUDA when it is available (off by default: these small MLPs run faster on the CPU)"""
    torch_threads: int = 1
    """torch's CPU threads, 0 for torch's default (one per core); why 1: benchmarks/README.md#threads"""
    save_model: bool = False
    """save the Q-network to {run folder}/model.pt at the end"""
    eval_episodes: int = 10
    """episodes to evaluate the final (saved, if --save-model) network with greedy actions; 0 skips"""
    capture_video: bool = False
    """record the evaluation episodes to {run folder}/videos (needs moviepy and a renderer; not BitFlip-v0)"""
    progress: bool = True
    """show a progress bar (plain periodic lines when stdout is not a terminal)"""
    checkpoint_every: int = 0
    """environment steps between checkpoints ({run folder}/checkpoint.pt); 0: only on SIGINT/SIGTERM"""
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
    env_id: str = "BitFlip-v0"
    """gymnasium id: a goal environment (BitFlip-v0, ...) or, with --no-her, one with vector observations"""
    n_bits: int = 15
    """BitFlip-v0 and BitFlipFixedGoal-v0 only: number of bits n (the episode lasts at most n steps)"""
    total_timesteps: int = 20_000
    """total environment steps, all environments together"""
    num_envs: int = 1
    """environments stepped together, one replay memory"""
    # Algorithm
    buffer_size: int = 1_000_000
    """replay capacity, transitions (one per environment step; HER relabels them when sampled)"""
    learning_rate: float = 1e-3
    """Adam learning rate (the HER paper's 1e-3)"""
    gamma: float = 0.98
    """discount factor, in [0, 1] (the HER paper's 0.98)"""
    tau: float = 1.0
    """target update rate: 1 copies the network, < 1 is Polyak averaging target <- tau Q + (1 - tau) target"""
    target_network_frequency: int = 20
    """environment steps between target updates"""
    batch_size: int = 128
    """transitions per gradient step (the HER paper's 128)"""
    start_e: float = 1.0
    """initial exploration rate"""
    end_e: float = 0.05
    """final exploration rate"""
    exploration_fraction: float = 0.5
    """fraction of --total-timesteps over which epsilon decays linearly"""
    learning_starts: int = 256
    """transitions in the replay before learning starts"""
    train_frequency: int = 1
    """environment steps between gradient steps"""
    hidden_size: int = 256
    """units in each of the two hidden layers"""
    double_q: bool = False
    """Double DQN target: the online network picks a', the target network values it"""
    target_clip: bool = True
    """goal environments: clip the TD target y to the range of values the rewards seen allow (see the header)"""
    per: bool = False
    """prioritized replay (proportional); off: uniform sampling"""
    per_alpha: float = 0.6
    """priority exponent alpha: 0 is uniform (the paper's 0.6)"""
    per_beta0: float = 0.4
    """initial importance-sampling exponent, annealed linearly to 1 over the run (the paper's 0.4)"""
    per_eps: float = 1e-6
    """added to |delta| so that no transition has priority 0"""
    her: bool = True
    """hindsight relabelling (goal environments only; --no-her for others)"""
    her_strategy: Literal["future", "final", "episode"] = "future"
    """where relabelled goals come from: achieved later in the episode, at its end, or anywhere in it"""
    her_k: int = 4
    """relabelled goals per original one: a sampled transition gets a relabelled goal with probability k / (k + 1)"""


# 3. Networks
class QNetwork(nn.Module):
    """x (B, obs + goal) -> (B, actions) Q-values; two ReLU hidden layers."""

    def __init__(self, in_dim: int, n_actions: int, hidden: int):
        super().__init__()
        layers = [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# 4. Targets and losses
def td_target(rewards, terminated, next_q_target, next_q_online, gamma, double_q: bool) -> torch.Tensor:
    """rewards, terminated, gamma (B,) or gamma a number; next_q_target, next_q_online (B, A) at s'. Returns y (B,):
    r + gamma (1 - terminated) max_a' Q_target(s', a'), or with double_q Q_target(s', argmax_a' Q_online(s', a'))."""
    if double_q:
        next_value = next_q_target.gather(1, next_q_online.argmax(1, keepdim=True)).squeeze(1)
    else:
        next_value = next_q_target.max(1).values
    return rewards + gamma * (~terminated).to(rewards.dtype) * next_value


def dqn_loss(q_network, target_network, b: dict, gamma: float, double_q: bool, bounds: tuple | None) -> tuple:
    """Weighted Huber TD loss of minibatch b, Q_theta(x, a) (B,) and the TD errors y - Q (B,). bounds: clip y
    into [low, high] (target_bounds), or None."""
    b = {k: torch.as_tensor(v, device=next(q_network.parameters()).device) for k, v in b.items()}
    with torch.no_grad():
        next_q_online = q_network(b["next_x"]) if double_q else None
        y = td_target(b["rewards"], b["terminated"], target_network(b["next_x"]), next_q_online, gamma, double_q)
        if bounds is not None:
            y = y.clamp(*bounds)
    q_taken = q_network(b["x"]).gather(1, b["actions"].unsqueeze(1)).squeeze(1)
    td_loss = (b["weights"] * F.smooth_l1_loss(q_taken, y, reduction="none")).mean()
    return td_loss, q_taken, (y - q_taken).detach()


def importance_weights(probabilities: np.ndarray, n: int, beta: float) -> np.ndarray:
    """w_i = (n P(i))^-beta, divided by the largest in the batch so that updates only shrink. (B,) -> (B,)."""
    w = (n * probabilities) ** -beta
    return (w / w.max()).astype(np.float32)


def target_bounds(r_min: float, r_max: float, gamma: float) -> tuple[float, float]:
    """[min(0, r_min), max(0, r_max)] / (1 - gamma), the range of true values (see the header); with gamma = 1 a
    side is unbounded unless its rewards are 0."""
    lo, hi = min(0.0, r_min), max(0.0, r_max)
    if gamma < 1:
        return lo / (1.0 - gamma), hi / (1.0 - gamma)
    return -float("inf") if lo < 0 else 0.0, float("inf") if hi > 0 else 0.0


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """From start at step 0 to end at step `duration`, linearly, then constant."""
    return start + (end - start) * t / duration if t < duration else end


def multiples_between(before: int, after: int, every: int) -> int:
    """Multiples of `every` in (before, after]: the updates due as global_step moves on, whatever --num-envs."""
    return after // every - before // every


# 5. Training loop
def main(args: Args) -> dict:
    # SETUP
    args, checkpoint = load_run(args, "dqn_per_her.py", "epsilon and beta keep the schedules of its first length")
    obs_space, action_space, goal_env = validate(args)
    num_envs = args.num_envs
    if (steps := -(-args.total_timesteps // num_envs) * num_envs) != args.total_timesteps:
        print(f"note: --total-timesteps {args.total_timesteps} runs as {steps}, a whole number of steps of all envs")
    device = setup_torch(args.seed, args.cuda, args.torch_threads, args.torch_deterministic)
    x_dim = network_input(obs_space.sample()).shape[-1]
    q_network = QNetwork(x_dim, action_space.n, args.hidden_size).to(device)
    evaluation = partial(evaluate, q_network, args.env_id, args.n_bits, args.eval_episodes, args.seed + 10_000)
    if args.evaluate:  # no training: the saved network's evaluation episodes, in a new run folder
        q_network.load_state_dict(checkpoint["q_network"])
        writer = open_run(args)
        eval_returns = finish_run(args, "dqn_per_her.py", writer, {"signal": None}, {}, evaluation)[0]
        return {"run_dir": writer.log_dir, "global_step": 0, "eval_returns": eval_returns, "signal": None}
    target_network = QNetwork(x_dim, action_space.n, args.hidden_size).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)  # one kernel per step
    goal_dim = obs_space["desired_goal"].shape[-1] if args.her else 0
    each = 8 * x_dim + 4 * goal_dim + 29 + 32 * args.per  # bytes: x, x' (float32), achieved goal, a, r, ends, tree
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if (fit := int(0.8 * memory // each)) < args.buffer_size:  # refused now, not when the ring fills up
        need = f"{args.buffer_size * each / 2**30:.1f} GiB of this machine's {memory / 2**30:.0f}"
        fail("--buffer-size", f"{args.buffer_size} transitions of {x_dim} inputs need {need}; at most {fit} fit")
    replay = ReplayMemory(args.buffer_size, x_dim, args.per, args.per_alpha, args.per_eps, args.seed, goal_dim)
    modules = {"q_network": q_network, "target_network": target_network, "optimizer": optimizer, "replay": replay}
    fresh = {"global_step": 0, "num_updates": 0, "schedule_timesteps": args.total_timesteps, "run_dir": None}
    state = restore(checkpoint, modules, fresh)
    global_step, num_updates = state["global_step"], state["num_updates"]
    schedule_timesteps = state["schedule_timesteps"]  # epsilon and beta: the run's first length, whatever comes
    explore_steps = int(args.exploration_fraction * schedule_timesteps)
    writer = open_run(args, state["run_dir"], resumed_at=global_step if checkpoint else None)
    run_dir = writer.log_dir
    del checkpoint  # a checkpoint's replay
    envs = make_envs(args.env_id, num_envs, args.n_bits)
    if args.her:
        env = envs.envs[0].unwrapped
        replay.hindsight = (args.her_strategy, args.her_k, env.compute_reward, getattr(env, "compute_terminated", None))
    episodes = [[] for _ in range(num_envs)]  # HER: the transitions of each environment's episode in progress
    stop = catch_stop_signals()  # finish the step in progress, then checkpoint and exit

    # LOOP
    start_time, start_step, sps = time.time(), global_step, 0
    episodic_returns, episodic_steps, successes, recent_returns = [], [], [], deque(maxlen=20)
    ep_return, ep_length = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    progress = ProgressReport(args.total_timesteps, global_step, args.progress)
    obs, _ = envs.reset(seed=args.seed + global_step)
    envs.action_space.seed(args.seed + global_step)
    x = network_input(obs)
    while global_step < args.total_timesteps and stop["signal"] is None:
        # ACT
        epsilon = linear_schedule(args.start_e, args.end_e, explore_steps, global_step)
        actions = envs.action_space.sample()
        greedy = np.random.random(num_envs) >= epsilon
        if greedy.any():
            with torch.no_grad():
                actions[greedy] = q_network(torch.as_tensor(x[greedy], device=device)).argmax(1).cpu().numpy()

        # STEP
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        global_step += num_envs
        dones = terminations | truncations
        next_x = network_input(next_obs)
        sps = int((global_step - start_step) / (time.time() - start_time))

        # RECORD EPISODES
        ep_return, ep_length = ep_return + rewards, ep_length + 1
        for i in np.flatnonzero(dones):
            episodic_returns.append(float(ep_return[i]))
            episodic_steps.append(global_step)
            recent_returns.append(float(ep_return[i]))
            writer.add_scalar("charts/episodic_return", ep_return[i], global_step)
            writer.add_scalar("charts/episodic_length", ep_length[i], global_step)
            if "is_success" in infos["final_info"]:  # an environment that says nothing: not counted (header)
                successes.append(float(infos["final_info"]["is_success"][i]))
                writer.add_scalar("charts/success_rate", successes[-1], global_step)
        ep_return[dones], ep_length[dones] = 0.0, 0

        # STORE: with HER, each episode whole once it ends (relabelled when sampled)
        if args.her:
            for i in range(num_envs):
                final = infos["final_obs"][i] if dones[i] else {k: v[i] for k, v in next_obs.items()}
                step = (obs["observation"][i], obs["desired_goal"][i], actions[i], rewards[i], terminations[i])
                episodes[i].append((*step, final["observation"], final["achieved_goal"]))
                if dones[i]:
                    replay.add_episode(episodes[i])
                    episodes[i] = []
        else:
            final_x = next_x.copy()  # x' of each transition: the true final observation where an episode ended
            for i in np.flatnonzero(dones):
                final_x[i] = network_input(infos["final_obs"][i])
            replay.add(x, actions, rewards, terminations, final_x)
        obs, x = next_obs, next_x

        # LEARN
        if len(replay) >= args.learning_starts:
            beta = linear_schedule(args.per_beta0, 1.0, schedule_timesteps, global_step)
            for _ in range(multiples_between(global_step - num_envs, global_step, args.train_frequency)):
                b = replay.sample(args.batch_size, beta)
                clip = args.target_clip and goal_env  # bounds after sampling: they count the relabelled rewards
                bounds = target_bounds(replay.r_min, replay.r_max, args.gamma) if clip else None
                td_loss, q_taken, td_errors = dqn_loss(q_network, target_network, b, args.gamma, args.double_q, bounds)
                optimizer.zero_grad()
                td_loss.backward()
                optimizer.step()
                if args.per:
                    replay.update_priorities(b["idx"], td_errors.cpu().numpy())
                num_updates += 1

                # LOG
                if num_updates % 100 == 1:  # the first update, then every 100th
                    writer.add_scalar("losses/td_loss", td_loss.item(), global_step)
                    writer.add_scalar("losses/q_values", q_taken.mean().item(), global_step)
                    writer.add_scalar("charts/epsilon", epsilon, global_step)
                    writer.add_scalar("charts/beta", beta, global_step)
                    writer.add_scalar("charts/SPS", sps, global_step)
            if multiples_between(global_step - num_envs, global_step, args.target_network_frequency):
                for p, tp in zip(q_network.parameters(), target_network.parameters(), strict=True):
                    tp.data.lerp_(p.data, args.tau)  # tau = 1: a copy

        progress.update(global_step, sps, recent_returns)
        if checkpoint_due(stop, args.checkpoint_every, global_step - num_envs, global_step, args.total_timesteps):
            state = dict(state, global_step=global_step, num_updates=num_updates, run_dir=run_dir)
            write_checkpoint(os.path.join(run_dir, "checkpoint.pt"), args, "dqn_per_her.py", modules, state)
    catch_stop_signals(False)
    progress.bar.stop()
    envs.close()

    # TEARDOWN
    rate = f", success rate {np.mean(successes[-len(recent_returns) :]):.2f}" if successes else ""
    summary = (global_step, global_step - start_step, time.time() - start_time, recent_returns, rate)
    networks = {"q_network": q_network}
    eval_returns, eval_successes = finish_run(args, "dqn_per_her.py", writer, stop, networks, evaluation, summary)
    result = {"run_dir": run_dir, "global_step": global_step, "episodic_returns": episodic_returns, "sps": sps}
    result |= {"episodic_steps": episodic_steps, "successes": successes, "eval_returns": eval_returns}
    result |= {"eval_successes": eval_successes, "signal": stop["signal"]}
    result |= {"num_updates": num_updates, "replay": replay, "q_network": q_network, "target_network": target_network}
    return result | {"optimizer": optimizer}


# 6. Environment
class BitFlipEnv(gym.Env):
    """The HER paper's bit flipping: state and goal in {0, 1}^n, action i flips bit i; reward -1 per step until
    the state equals the goal (reward 0, terminated); truncated after n steps. The goal is drawn anew each
    episode, or with fixed_goal is always all ones (Stable-Baselines3's BitFlippingEnv)."""

    def __init__(self, n_bits: int = 15, fixed_goal: bool = False):
        self.n, self.fixed_goal = n_bits, fixed_goal
        box = gym.spaces.Box(0.0, 1.0, (n_bits,), np.float32)
        self.observation_space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = gym.spaces.Discrete(n_bits)

    def _obs(self):
        return {"observation": self.state.copy(), "achieved_goal": self.state.copy(), "desired_goal": self.goal.copy()}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.state, self.t = self.np_random.integers(0, 2, self.n).astype(np.float32), 0
        self.goal = np.ones(self.n, np.float32) if self.fixed_goal else self.state
        while (self.goal == self.state).all():  # never start at the goal: redraw the state (fixed goal) or the goal
            new = self.np_random.integers(0, 2, self.n).astype(np.float32)
            self.state, self.goal = (new, self.goal) if self.fixed_goal else (self.state, new)
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.state[action], self.t = 1.0 - self.state[action], self.t + 1
        reward = float(self.compute_reward(self.state, self.goal, {}))
        success = bool(self.compute_terminated(self.state, self.goal, {}))
        return self._obs(), reward, success, self.t >= self.n and not success, {"is_success": success}

    def compute_reward(self, achieved_goal, desired_goal, info):
        """Vectorised over leading dimensions: 0 where achieved == desired, else -1."""
        return -(achieved_goal != desired_goal).any(-1).astype(np.float32)

    def compute_terminated(self, achieved_goal, desired_goal, info):
        """Vectorised like compute_reward (gymnasium-robotics' GoalEnv protocol): success ends the episode."""
        return (achieved_goal == desired_goal).all(-1)


gym.register("BitFlip-v0", entry_point=BitFlipEnv)
gym.register("BitFlipFixedGoal-v0", entry_point=BitFlipEnv, kwargs={"fixed_goal": True})


def is_goal_env(env: gym.Env) -> bool:
    keys = {"observation", "achieved_goal", "desired_goal"}  # in a Dict space's spaces
    return keys <= set(getattr(env.observation_space, "spaces", ())) and hasattr(env.unwrapped, "compute_reward")


def make_env(env_id: str, n_bits: int, render_mode: str | None = None) -> gym.Env:
    """gym.make; render_mode only if asked (an env may take none) and offered, else a TypeError for check_args."""
    spec = gym.registry.get(env_id)  # None for a "module:EnvId" not imported yet: gym.make imports its module
    kwargs = {"n_bits": n_bits} if spec is not None and spec.entry_point is BitFlipEnv else {}
    if render_mode and render_mode not in gym.make(env_id, **kwargs).metadata.get("render_modes", []):
        raise TypeError(f"{env_id} has no {render_mode} renderer")
    env = gym.make(env_id, **kwargs, **({"render_mode": render_mode} if render_mode else {}))
    onehot = isinstance(env.observation_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete)  # categories: one-hot
    return gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.float32) if onehot else env


def make_envs(env_id: str, num_envs: int, n_bits: int = 15) -> gym.vector.SyncVectorEnv:
    same_step = gym.vector.AutoresetMode.SAME_STEP  # see the header
    return gym.vector.SyncVectorEnv([lambda: make_env(env_id, n_bits)] * num_envs, autoreset_mode=same_step)


def network_input(obs) -> np.ndarray:
    """Goal environments: [observation, desired_goal] along the last axis; others: the observation."""
    if isinstance(obs, dict):
        return np.concatenate([obs["observation"], obs["desired_goal"]], -1).astype(np.float32)
    return np.asarray(obs, np.float32)


# 7. Storage: a sum tree, a (prioritized) replay memory and hindsight relabelling
class SumTree:
    """A complete binary tree over `capacity` leaves (rounded up to a power of two) in one array: node i has
    children 2i and 2i + 1, the root is node 1, leaf j is node size + j. Each node holds the sum of its leaves."""

    def __init__(self, capacity: int):
        self.size = 1 << max(capacity - 1, 1).bit_length()
        self.depth = self.size.bit_length() - 1
        self.nodes = np.zeros(2 * self.size)

    def total(self) -> float:
        return float(self.nodes[1])

    def update(self, leaves: np.ndarray, values: np.ndarray):
        """Set leaves to values, then recompute their ancestors level by level: O(B log N)."""
        i = leaves + self.size
        self.nodes[i] = values
        for _ in range(self.depth):
            i = i // 2
            self.nodes[i] = self.nodes[2 * i] + self.nodes[2 * i + 1]

    def find(self, values: np.ndarray) -> np.ndarray:
        """For each v in [0, total), the leaf j with sum(leaves < j) <= v < sum(leaves <= j): descend, going
        right (and subtracting the left sum) where v is not below the left child's sum. O(B log N)."""
        i = np.ones(len(values), np.int64)
        for _ in range(self.depth):
            left = self.nodes[2 * i]
            right = values >= left
            values = np.where(right, values - left, values)
            i = 2 * i + right
        return i - self.size


class ReplayMemory:
    """A ring of transitions (x, a, r, terminated, x'), x the network's input; prioritized: a sum tree of p_i^alpha.
    HER (goal_dim > 0, `hindsight` set): whole episodes, each transition with the goal achieved at x' and its
    episode's first and last ring positions; the goal (the last goal_dim entries of x and x') relabelled when
    sampled. r_min, r_max: the smallest and largest rewards seen, stored or relabelled."""

    ARRAYS = ("x", "next_x", "actions", "rewards", "terminated", "next_achieved", "episode_start", "episode_end")
    SCALARS = ("pos", "size", "max_priority", "r_min", "r_max")

    def __init__(self, capacity: int, x_dim: int, prioritized: bool, alpha: float, eps: float, seed: int, goal_dim=0):
        self.capacity, self.prioritized, self.alpha, self.eps = capacity, prioritized, alpha, eps
        self.x, self.next_x = np.zeros((capacity, x_dim), np.float32), np.zeros((capacity, x_dim), np.float32)
        self.actions, self.rewards = np.zeros(capacity, np.int64), np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, bool)
        self.next_achieved = np.zeros((capacity, goal_dim), np.float32)  # HER: the goal achieved at x'
        self.episode_start, self.episode_end = np.zeros(capacity, np.int64), np.zeros(capacity, np.int64)  # HER
        self.hindsight = None  # HER: (strategy, k, compute_reward, compute_terminated or None)
        self.pos, self.size, self.max_priority, self.r_min, self.r_max = 0, 0, 1.0, float("inf"), float("-inf")
        self.tree = SumTree(capacity) if prioritized else None
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, x, actions, rewards, terminated, next_x, next_achieved=None):
        """B transitions, each argument with leading dimension B; with next_achieved, they are one whole episode."""
        idx = (self.pos + np.arange(len(actions))) % self.capacity
        self.x[idx], self.actions[idx], self.rewards[idx] = x, actions, rewards
        self.terminated[idx], self.next_x[idx] = terminated, next_x
        self.see_rewards(self.rewards[idx])
        if self.prioritized:
            self.tree.update(idx, np.full(len(idx), self.max_priority**self.alpha))
        self.pos = int((self.pos + len(actions)) % self.capacity)
        self.size = min(self.size + len(actions), self.capacity)
        if next_achieved is not None:
            self.next_achieved[idx] = next_achieved
            self.episode_start[idx], self.episode_end[idx] = idx[0], idx[-1]
            # a full ring overwrites the oldest episode from its start: what is left of it, from the next
            # position to write to its end, becomes the episode its transitions relabel from
            oldest = self.pos
            if self.size == self.capacity and self.episode_start[oldest] != oldest:
                rest = (oldest + np.arange((self.episode_end[oldest] - oldest) % self.capacity + 1)) % self.capacity
                self.episode_start[rest] = oldest

    def sample(self, n: int, beta: float) -> dict:
        """n transitions with their indices and importance weights (all 1 without prioritization)."""
        if not self.prioritized:
            idx = self.rng.integers(0, self.size, n)
            weights = np.ones(n, np.float32)
        else:  # one draw in each of n equal slices of the total priority
            total = self.tree.total()
            values = (np.arange(n) + self.rng.random(n)) * (total / n)
            idx = np.minimum(self.tree.find(values), self.size - 1)
            weights = importance_weights(self.tree.nodes[idx + self.tree.size] / total, self.size, beta)
        b = {k: getattr(self, k)[idx] for k in ("x", "actions", "rewards", "terminated", "next_x")}
        b |= {"idx": idx, "weights": weights}
        if self.hindsight is not None:
            self.relabel(b)
        return b

    def relabel(self, b: dict):
        """HER, in place on a sampled batch (see the header): goals, their rewards and (compute_terminated) ends."""
        strategy, k, compute_reward, compute_terminated = self.hindsight
        b["relabelled"] = self.rng.random(len(b["idx"])) < k / (k + 1)
        rows = np.flatnonzero(b["relabelled"])
        t = b["idx"][rows]
        later = her_goal_positions(t, self.episode_start[t], self.episode_end[t], strategy, self.capacity, self.rng)
        goals = self.next_achieved[later]
        b["x"][rows, -goals.shape[1] :] = goals
        b["next_x"][rows, -goals.shape[1] :] = goals
        b["rewards"][rows] = compute_reward(self.next_achieved[t], goals, {})
        self.see_rewards(b["rewards"][rows])
        if compute_terminated is not None:
            b["terminated"][rows] = compute_terminated(self.next_achieved[t], goals, {})

    def add_episode(self, episode: list):
        """HER: an episode's transitions in order, each (obs, goal, action, reward, terminated, next obs, achieved)."""
        obs, goals, actions, rewards, terminated, next_obs, next_achieved = (np.stack(f) for f in zip(*episode))
        x, next_x = np.concatenate([obs, goals], 1), np.concatenate([next_obs, goals], 1)
        self.add(x, actions, rewards, terminated, next_x, next_achieved)

    def see_rewards(self, rewards: np.ndarray):
        if len(rewards):
            self.r_min, self.r_max = min(self.r_min, float(rewards.min())), max(self.r_max, float(rewards.max()))

    def update_priorities(self, idx: np.ndarray, td_errors: np.ndarray):
        priorities = np.abs(td_errors) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(idx, priorities**self.alpha)

    def state_dict(self) -> dict:
        state = {k: torch.from_numpy(getattr(self, k)[: self.size]) for k in self.ARRAYS}
        state |= {k: getattr(self, k) for k in self.SCALARS} | {"rng": self.rng.bit_generator.state}
        return state | {"tree": None if self.tree is None else torch.from_numpy(self.tree.nodes)}

    def load_state_dict(self, state: dict):
        for k in self.ARRAYS:
            getattr(self, k)[: state["size"]] = state[k].numpy()
        self.pos, self.size, self.max_priority, self.r_min, self.r_max = (state[k] for k in self.SCALARS)
        if self.tree is not None:  # the run's own --per: saved with the tree
            self.tree.nodes[:] = state["tree"].numpy()
        self.rng.bit_generator.state = state["rng"]


def her_goal_positions(t, start, end, strategy: str, capacity: int, rng: np.random.Generator) -> np.ndarray:
    """Ring positions t (B,) in episodes at [start, end] (B,), possibly wrapping around. The position t' of each
    one's new goal, achieved after step t': future: uniform in [t, end]; final: end; episode: in [start, end]."""
    if strategy == "final":
        return end
    first = t if strategy == "future" else start
    return (first + rng.integers(0, (end - first) % capacity + 1)) % capacity


# 8. Plumbing
def validate(args: Args) -> tuple[gym.Space, gym.Space, bool]:
    """Check every flag before any work; return the observation and action spaces and whether it is a goal env."""
    sizes = "total_timesteps num_envs buffer_size batch_size train_frequency hidden_size target_network_frequency"
    fractions = "gamma start_e end_e exploration_fraction per_alpha per_beta0 tau"  # tau in (0, 1]
    make = partial(make_env, args.env_id, args.n_bits)
    env = check_args(args, make, positive=sizes + " her_k n_bits learning_rate per_eps tau", fraction=fractions)
    if args.batch_size > args.buffer_size:
        fail("--batch-size", f"{args.batch_size} is larger than the replay (--buffer-size {args.buffer_size})")
    if not args.batch_size <= args.learning_starts <= args.buffer_size:
        valid = f"[--batch-size, --buffer-size] = [{args.batch_size}, {args.buffer_size}]"
        fail("--learning-starts", f"must be in {valid}, got {args.learning_starts}")
    if args.learning_starts + args.train_frequency > args.total_timesteps:
        never = f"{args.learning_starts} leaves no gradient step in a run of --total-timesteps {args.total_timesteps}"
        fail("--learning-starts", f"{never} (one every --train-frequency steps from then on): lower it or train longer")
    goal = is_goal_env(env)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        fail("--env-id", f"{args.env_id} has action space {env.action_space}; DQN needs a Discrete one")
    if args.her and not goal:
        goal_env = "Dict observation with achieved_goal and desired_goal, and compute_reward"
        fail("--her", f"{args.env_id} is not a goal environment ({goal_env}); pass --no-her")
    longest = env.unwrapped.n if isinstance(env.unwrapped, BitFlipEnv) else env.spec.max_episode_steps
    if args.her and longest is not None and args.buffer_size < longest:  # an episode must not overwrite itself
        valid = f"at least {args.env_id}'s longest episode, {longest} steps"
        fail("--buffer-size", f"HER stores whole episodes: must be {valid}, got {args.buffer_size}")
    if not goal and not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        fail("--env-id", f"{args.env_id} has observation space {env.observation_space}; valid: 1-D Box or a goal env")
    env.close()
    return env.observation_space, env.action_space, goal


def evaluate(q_network, env_id: str, n_bits: int, episodes: int, seed: int, video_dir=None) -> tuple:
    """Whole episodes with greedy actions; returns their returns and successes (None where the env says none)."""
    device = next(q_network.parameters()).device
    env = make_env(env_id, n_bits, "rgb_array" if video_dir else None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
    (obs, _), returns, successes, total = env.reset(seed=seed), [], [], 0.0
    while len(returns) < episodes:
        with torch.no_grad():
            action = int(q_network(torch.as_tensor(network_input(obs), device=device)[None]).argmax(1).item())
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        if terminated or truncated:
            returns.append(total)
            successes += [float(info["is_success"])] if "is_success" in info else []
            (obs, _), total = env.reset(), 0.0
    env.close()
    return returns, successes or None


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
