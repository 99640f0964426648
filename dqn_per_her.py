"""DQN with Prioritized Experience Replay and Hindsight Experience Replay, on goal-conditioned tasks.

DQN (as in dqn_atari.py, with an MLP): Q_theta(x, .) over x = [observation, goal], epsilon-greedy acting,
a replay memory, a target network, and one Adam step per train_frequency environment steps on

    y = r + gamma * (1 - terminated) * max_a' Q_target(x', a')     (--double-q: Q_target(x', argmax Q_theta(x', .)))
    L = mean_i( w_i * huber(Q_theta(x_i, a_i) - y_i) )

Prioritized replay (Schaul et al. 2015, arXiv:1511.05952, the proportional variant): transition i is drawn
with probability P(i) = p_i / sum_j p_j, p_i = (|delta_i| + eps)^alpha, where delta_i is its last TD error
and new transitions get the largest priority seen so far. The bias this adds is undone by importance
weights w_i = (N P(i))^-beta, divided by the batch's largest, with beta annealed linearly from beta0 to 1.
A sum tree (leaves p_i, each node the sum of its two children) finds the leaf holding a value v in
[0, sum p) in O(log N), and updates a priority in O(log N); a batch of B draws takes one value in each of B
equal slices of the total. The paper lowers the learning rate 4x with PER, since its updates are larger.

Hindsight replay (Andrychowicz et al. 2017, arXiv:1707.01495): an episode that missed its goal g still
shows how to reach the goals it did achieve. Each transition (s_t, a_t, s_t+1, g) is stored once, as it
happened, when its episode ends; each time it is sampled, with probability k / (k + 1), its goal is replaced
by one achieved in the same episode: `future` (achieved after a step t' in [t, T)), `final` (at the end) or
`episode` (after any step), so that k relabelled goals come for each original one, a fresh goal at every
draw (as in the paper's own code, OpenAI baselines). The reward is recomputed with the environment's
compute_reward(achieved_goal, new_goal, info); relabelled goals never come from another episode. Where the
environment has a vectorised compute_terminated(achieved_goal, new_goal, info) (gymnasium-robotics' GoalEnv
protocol; BitFlip-v0's says success ends the episode), the termination is recomputed with it too; otherwise
terminations are taken as independent of the goal and the stored flag is kept. With both, a transition's
priority is the TD error of the goal it was last sampled with.

Exploration decides how far HER gets: a relabelled goal is only as far from the state as the episode went.
Epsilon decays over half the run (--exploration-fraction 0.5), so that while the network is still poor,
random flips carry episodes far from their start and far goals get into the replay; decaying it over the
first 5% solves 15 bits sooner but never 40 or 50 (benchmarks/README.md).

Stability. With rewards in [r_min, r_max], every true value (a discounted sum of rewards, possibly cut short
by a termination) lies in [min(0, r_min), max(0, r_max)] / (1 - gamma): [-1/(1 - gamma), 0] for BitFlip-v0;
bootstrapped targets outside that range are errors feeding on themselves, so in goal environments the target y
is clipped to it (the HER paper clips its DDPG targets the same way; --no-target-clip turns it off). r_min and
r_max are the smallest and largest rewards the replay has seen, stored or recomputed by relabelling, not the
environment's true range: values that only rewards never seen yet could reach are cut until one is seen.
What keeps 50-bit runs at their solution, and what collapses them, is measured in benchmarks/README.md.

Environments: BitFlip-v0, written and registered here (the HER paper's task: n bits, flip one per step,
reward -1 until the state equals the goal, then the episode ends; n steps at most; a new random goal each
episode), and BitFlipFixedGoal-v0, the same with the goal always all ones (Stable-Baselines3's
BitFlippingEnv, an easier task, kept to compare with that library on its own terms); any gymnasium goal
environment (Dict observation with observation, achieved_goal, desired_goal and a vectorised
compute_reward); and, with --no-her, ordinary environments with vector observations and discrete actions.

Episode boundaries: SAME_STEP autoreset, true final observations from info["final_obs"]; a truncation
(time limit) bootstraps from the final observation, a termination does not.

Usage:
    python dqn_per_her.py                                   # DQN + HER, 15 bits, 20k steps: solved by about 10k
    python dqn_per_her.py --n-bits 50 --total-timesteps 120000    # the HER paper's hardest case
    python dqn_per_her.py --n-bits 20 --no-her              # plain DQN: no success at n = 20
    python dqn_per_her.py --n-bits 20 --per                 # prioritized replay, everything else equal
    python dqn_per_her.py --env-id CartPole-v1 --no-her --per --total-timesteps 50000
    python dqn_per_her.py --hidden-size 64 --num-envs 4    # 15 bits at about 1,100 steps per second
    python dqn_per_her.py --env-id BitFlipFixedGoal-v0 --n-bits 30  # Stable-Baselines3's task: 0.9 by about 10k
    python dqn_per_her.py --resume runs/.../checkpoint.pt --total-timesteps 40000  # extend; schedules stay
    python dqn_per_her.py --evaluate runs/.../model.pt --eval-episodes 100  # no training: success rate of a model

TensorBoard keys:
    charts/episodic_return    undiscounted return of each finished episode
    charts/episodic_length    its length, environment steps
    charts/success_rate       goal environments: 1 if the episode ended at its goal, else 0, each episode
    charts/epsilon            exploration rate
    charts/beta               PER importance-sampling exponent
    charts/SPS                environment steps per second
    losses/td_loss            weighted mean Huber TD loss of the last minibatch
    losses/q_values           mean Q_theta(x, a) of the last minibatch
    eval/episodic_return      return of each evaluation episode (greedy actions)
    eval/success_rate         goal environments: success of each evaluation episode
"""

# 1. Imports
import dataclasses
import difflib
import importlib
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
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
    # the PER paper lowers the learning rate 4x with prioritization, whose updates are larger
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
    # long: random flips keep the episodes, and so their hindsight goals, reaching far from the start while the
    # network learns (benchmarks/README.md compares shorter decays)
    exploration_fraction: float = 0.5
    """fraction of --total-timesteps over which epsilon decays linearly"""
    learning_starts: int = 256
    """transitions in the replay before learning starts"""
    train_frequency: int = 1
    """environment steps between gradient steps"""
    # fewer units run faster; benchmarks/README.md has what the width buys at 15 and 50 bits
    hidden_size: int = 256
    """units in each of the two hidden layers"""
    double_q: bool = False
    """Double DQN target: the online network picks a', the target network values it"""
    # [min(0, r_min), max(0, r_max)] / (1 - gamma) is the range of true values with rewards in [r_min, r_max],
    # the smallest and largest the replay has seen (BitFlip-v0: [-1/(1 - gamma), 0])
    target_clip: bool = True
    """goal environments: clip the TD target y to the range of values the rewards seen allow"""
    # off by default: benchmarks/README.md compares it with uniform sampling, with and without HER
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
def td_target(rewards, terminated, next_q_target, next_q_online, gamma: float, double_q: bool) -> torch.Tensor:
    """rewards, terminated (B,); next_q_target, next_q_online (B, A) at s'. Returns y (B,):
    r + gamma (1 - terminated) max_a' Q_target(s', a'), or with double_q Q_target(s', argmax_a' Q_online(s', a'))."""
    if double_q:
        next_value = next_q_target.gather(1, next_q_online.argmax(1, keepdim=True)).squeeze(1)
    else:
        next_value = next_q_target.max(1).values
    return rewards + gamma * (~terminated).to(rewards.dtype) * next_value


def dqn_loss(q_network, target_network, b: dict, gamma: float, double_q: bool, bounds: tuple | None) -> tuple:
    """Weighted Huber TD loss of minibatch b, Q_theta(x, a) (B,) and the TD errors y - Q (B,). bounds: clip y
    into [low, high] (target_bounds), or None."""
    device = next(q_network.parameters()).device
    b = {
        k: torch.as_tensor(b[k], device=device) for k in ("x", "next_x", "actions", "rewards", "terminated", "weights")
    }
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
    """The range of true values when every reward lies in [r_min, r_max]: a discounted sum of such rewards,
    possibly cut short by a termination (zero reward after it), lies in [min(0, r_min), max(0, r_max)] / (1 - gamma);
    with gamma = 1 a side is unbounded unless its rewards are 0."""
    lo, hi = min(0.0, r_min), max(0.0, r_max)
    if gamma < 1:
        return lo / (1.0 - gamma), hi / (1.0 - gamma)
    return -float("inf") if lo < 0 else 0.0, float("inf") if hi > 0 else 0.0


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """From start at step 0 to end at step `duration`, linearly, then constant."""
    return start + (end - start) * t / duration if t < duration else end


# 5. Training loop
def main(args: Args) -> dict:
    # SETUP
    if args.evaluate is not None:
        return evaluate_saved(args, "dqn_per_her.py", saved_evaluation)
    checkpoint = load_checkpoint(args.resume, "dqn_per_her.py") if args.resume else None
    args = resume_args(args, checkpoint["args"]) if checkpoint else args  # the run's own flags (resume_args)
    obs_space, action_space, goal_env = validate(args)
    num_envs = args.num_envs
    say_rounded(args.total_timesteps, -(-args.total_timesteps // num_envs) * num_envs, "steps of all envs")
    device = setup_torch(args.seed, args.cuda, args.torch_threads, args.torch_deterministic)

    x_dim = network_input(obs_space.sample()).shape[-1]
    q_network = QNetwork(x_dim, action_space.n, args.hidden_size).to(device)
    target_network = QNetwork(x_dim, action_space.n, args.hidden_size).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)  # one kernel per step
    goal_dim = obs_space["desired_goal"].shape[-1] if args.her else 0
    replay = ReplayMemory(args.buffer_size, x_dim, args.per, args.per_alpha, args.per_eps, args.seed, goal_dim)
    modules = {"q_network": q_network, "target_network": target_network, "optimizer": optimizer, "replay": replay}
    state = {"global_step": 0, "num_updates": 0, "schedule_timesteps": args.total_timesteps, "run_dir": None}
    global_step, num_updates, schedule_timesteps, run_dir = restore(checkpoint, modules, state)
    explore_steps = int(args.exploration_fraction * schedule_timesteps)  # epsilon and beta: the run's first length
    if checkpoint is not None:
        schedules = f"epsilon and beta keep their schedules, {args.end_e} from step {explore_steps} and 1 from"
        schedules += f" {schedule_timesteps} on"
        say_where_resumed(global_step, args.total_timesteps, checkpoint["args"]["total_timesteps"], schedules)
        del checkpoint
    run_dir = run_dir or new_run_dir(args.env_id, args.exp_name, args.seed)
    writer = open_run(args, run_dir, resumed_at=global_step if args.resume else None)
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
    while global_step < args.total_timesteps:
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
        ep_return += rewards
        ep_length += 1
        for i in np.flatnonzero(dones):
            episodic_returns.append(float(ep_return[i]))
            episodic_steps.append(global_step)
            recent_returns.append(float(ep_return[i]))
            writer.add_scalar("charts/episodic_return", ep_return[i], global_step)
            writer.add_scalar("charts/episodic_length", ep_length[i], global_step)
            if goal_env:
                successes.append(float(infos["final_info"]["is_success"][i]))
                writer.add_scalar("charts/success_rate", successes[-1], global_step)
        ep_return[dones], ep_length[dones] = 0.0, 0

        # STORE: goal environments with HER keep each episode until it ends, then add it with relabelled copies
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
            state = {"global_step": global_step, "num_updates": num_updates, "schedule_timesteps": schedule_timesteps}
            state["run_dir"] = run_dir
            write_checkpoint(os.path.join(run_dir, "checkpoint.pt"), args, "dqn_per_her.py", modules, state)
        if stop["signal"] is not None:
            break
    release_stop_signals()
    progress.close()
    envs.close()

    # TEARDOWN
    evaluation = partial(evaluate, q_network, args.env_id, args.n_bits, args.eval_episodes, args.seed + 10_000)
    eval_returns, eval_successes, saved = finish_training(
        args, "dqn_per_her.py", stop, {"q_network": q_network}, evaluation, writer
    )
    close_run(writer, args.track)
    recent_successes = successes[-len(recent_returns) :] if goal_env and recent_returns else []
    rate = f", success rate {np.mean(recent_successes):.2f}" if recent_successes else ""
    print_summary(run_dir, global_step, global_step - start_step, time.time() - start_time, recent_returns, saved, rate)
    result = {"run_dir": run_dir, "global_step": global_step, "episodic_returns": episodic_returns, "sps": sps}
    result |= {"episodic_steps": episodic_steps, "successes": successes, "eval_returns": eval_returns}
    result |= {"eval_successes": eval_successes, "signal": stop["signal"], "interrupted": stop["signal"] is not None}
    result |= {"num_updates": num_updates, "replay": replay, "q_network": q_network, "target_network": target_network}
    result |= {
        "optimizer": optimizer,
        "final_return": float(np.mean(recent_returns)) if recent_returns else float("nan"),
    }
    return result


# 6. Environment
class BitFlipEnv(gym.Env):
    """The HER paper's bit flipping: state and goal in {0, 1}^n, action i flips bit i; reward -1 per step until
    the state equals the goal (reward 0, terminated); truncated after n steps. The goal is drawn anew each
    episode, or with fixed_goal is always all ones (Stable-Baselines3's BitFlippingEnv)."""

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(self, n_bits: int = 15, fixed_goal: bool = False, render_mode: str | None = None):
        self.n, self.fixed_goal, self.render_mode = n_bits, fixed_goal, render_mode
        box = gym.spaces.Box(0.0, 1.0, (n_bits,), np.float32)
        self.observation_space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = gym.spaces.Discrete(n_bits)

    def _obs(self):
        return {"observation": self.state.copy(), "achieved_goal": self.state.copy(), "desired_goal": self.goal.copy()}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.integers(0, 2, self.n).astype(np.float32)
        if self.fixed_goal:
            self.goal = np.ones(self.n, np.float32)
            while (self.goal == self.state).all():  # never start at the goal
                self.state = self.np_random.integers(0, 2, self.n).astype(np.float32)
        else:
            self.goal = self.state
            while (self.goal == self.state).all():
                self.goal = self.np_random.integers(0, 2, self.n).astype(np.float32)
        self.t = 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.state[action] = 1.0 - self.state[action]
        self.t += 1
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
    space = env.observation_space
    keys = {"observation", "achieved_goal", "desired_goal"}
    return isinstance(space, gym.spaces.Dict) and keys <= set(space.keys()) and hasattr(env.unwrapped, "compute_reward")


def make_env(env_id: str, n_bits: int, render: bool = False) -> gym.Env:
    kwargs = {"n_bits": n_bits} if gym.spec(env_id.rpartition(":")[2]).entry_point is BitFlipEnv else {}
    if render:  # only then: an environment without a renderer may take no render_mode at all
        kwargs["render_mode"] = "rgb_array"
    return gym.make(env_id, **kwargs)


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
    """A ring of transitions (x, a, r, terminated, x') with x the network's input; with prioritized=True also a
    sum tree of their priorities p_i^alpha, new ones at the largest priority seen so far. For HER (goal_dim > 0
    and `hindsight` set), whole episodes are added in order, with the goal achieved at each x', and the last
    goal_dim entries of x and x' (the goal) are relabelled when sampled. r_min and r_max are the smallest and
    largest rewards it has seen, stored or recomputed by relabelling: they bound the TD targets."""

    ARRAYS = ("x", "next_x", "actions", "rewards", "terminated", "next_achieved", "episode_start", "episode_end")

    def __init__(self, capacity: int, x_dim: int, prioritized: bool, alpha: float, eps: float, seed: int, goal_dim=0):
        self.capacity, self.prioritized, self.alpha, self.eps = capacity, prioritized, alpha, eps
        self.x = np.zeros((capacity, x_dim), np.float32)
        self.next_x = np.zeros((capacity, x_dim), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, bool)
        self.next_achieved = np.zeros((capacity, goal_dim), np.float32)  # HER: the goal achieved at x'
        self.episode_start = np.zeros(capacity, np.int64)  # HER: ring positions of the first and last
        self.episode_end = np.zeros(capacity, np.int64)  # transitions of each transition's episode
        self.hindsight = None  # HER: (strategy, k, compute_reward, compute_terminated or None)
        self.r_min, self.r_max = float("inf"), float("-inf")
        self.pos, self.size = 0, 0
        self.tree = SumTree(capacity) if prioritized else None
        self.max_priority = 1.0
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
        """HER, in place on a sampled batch: with probability k / (k + 1) a transition's goal becomes one its own
        episode achieved; its reward is recomputed, and its termination too where the environment has
        compute_terminated (otherwise terminations are taken as independent of the goal: the stored flag stays)."""
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
        """HER: an episode's transitions in order, each (obs, goal, action, reward, terminated, next obs, the goal
        achieved after the step)."""
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
        state |= {"pos": self.pos, "size": self.size, "max_priority": self.max_priority, "r_min": self.r_min}
        state |= {"tree": None if self.tree is None else torch.from_numpy(self.tree.nodes), "r_max": self.r_max}
        return state | {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict):
        for k in self.ARRAYS:
            getattr(self, k)[: state["size"]] = state[k].numpy()
        self.pos, self.size, self.max_priority = state["pos"], state["size"], state["max_priority"]
        if self.tree is not None and state["tree"] is not None:
            self.tree.nodes[:] = state["tree"].numpy()
        elif self.tree is not None:  # saved without priorities: every stored transition at priority 1
            self.tree.update(np.arange(self.size), np.ones(self.size))
        self.rng.bit_generator.state = state["rng"]
        self.r_min, self.r_max = state["r_min"], state["r_max"]


def her_goal_positions(t, start, end, strategy: str, capacity: int, rng: np.random.Generator) -> np.ndarray:
    """Ring positions t (B,) of transitions whose episodes lie at [start, end] (B,) (in ring order, so possibly
    wrapping around). Returns the position t' of each one's new goal, the goal achieved after step t': future:
    uniform in [t, end]; final: end; episode: uniform in [start, end]."""
    if strategy == "final":
        return end
    first = t if strategy == "future" else start
    return (first + rng.integers(0, (end - first) % capacity + 1)) % capacity


# 8. Plumbing
def supported_env_ids() -> list[str]:
    """The ids a typo is matched against: the bit-flipping tasks of this file, gymnasium's own families with
    vector observations (classic control, Box2D, MuJoCo) and a user's registered ids; not toy text (discrete
    observations) or the JAX versions under phys2d/ and tabular/."""
    return [k for k, spec in gym.registry.items() if spec.namespace is None and "toy_text" not in str(spec.entry_point)]


def validate(args: Args) -> tuple[gym.Space, gym.Space, bool]:
    """Check every flag before any work; return the single observation and action spaces, and whether the
    environment is goal-conditioned."""
    sizes = "total_timesteps num_envs buffer_size batch_size train_frequency hidden_size target_network_frequency"
    fractions = "gamma start_e end_e exploration_fraction per_alpha per_beta0"
    check_ranges(args, positive=sizes + " her_k n_bits learning_rate per_eps", fraction=fractions)
    if not 0.0 < args.tau <= 1.0:
        fail("--tau", f"must be in (0, 1], got {args.tau}")
    if args.batch_size > args.buffer_size:
        fail("--batch-size", f"{args.batch_size} is larger than the replay (--buffer-size {args.buffer_size})")
    if not args.batch_size <= args.learning_starts <= args.buffer_size:
        valid = f"[--batch-size, --buffer-size] = [{args.batch_size}, {args.buffer_size}]"
        fail("--learning-starts", f"must be in {valid}, got {args.learning_starts}")
    if args.learning_starts + args.train_frequency > args.total_timesteps:
        fail(
            "--learning-starts",
            f"{args.learning_starts} leaves no gradient step in a run of --total-timesteps {args.total_timesteps} "
            f"(one every --train-frequency {args.train_frequency} steps from then on): lower it or train longer",
        )
    check_run_flags(args)
    check_env_id(args.env_id, supported_env_ids())
    try:
        env = make_env(args.env_id, args.n_bits)
    except (gym.error.Error, ImportError) as e:
        fail("--env-id", f"{args.env_id} cannot be created: {e}")
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
    if args.capture_video:
        if "rgb_array" not in env.metadata.get("render_modes", []):
            fail("--capture-video", f"{args.env_id} has no rgb_array renderer")
        check_video(lambda: make_env(args.env_id, args.n_bits, render=True))
    spaces = env.observation_space, env.action_space
    env.close()
    return *spaces, goal


def evaluate(q_network, env_id: str, n_bits: int, episodes: int, seed: int, video_dir=None) -> tuple:
    """Whole episodes with greedy actions; returns their returns and, in a goal environment, their successes."""
    device = next(q_network.parameters()).device
    env = make_env(env_id, n_bits, render=video_dir is not None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
    obs, _ = env.reset(seed=seed)
    returns, successes, total = [], [], 0.0
    while len(returns) < episodes:
        with torch.no_grad():
            action = int(q_network(torch.as_tensor(network_input(obs), device=device)[None]).argmax(1).item())
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        if terminated or truncated:
            returns.append(total)
            successes.append(float(info.get("is_success", 0.0)))
            total = 0.0
            obs, _ = env.reset()
    env.close()
    return returns, successes if is_goal_env(env) else None


def saved_evaluation(args: Args, saved: dict, device):
    """--evaluate: the saved Q-network, for evaluate_saved; greedy actions."""
    obs_space, action_space, _ = validate(args)
    q_network = QNetwork(network_input(obs_space.sample()).shape[-1], action_space.n, args.hidden_size).to(device)
    q_network.load_state_dict(saved["q_network"])
    return partial(evaluate, q_network, args.env_id, args.n_bits, args.eval_episodes, args.seed + 10_000)


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
