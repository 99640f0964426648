"""REINFORCE: the likelihood-ratio policy gradient, with reward-to-go and a learned baseline.

The policy pi_theta(a|s) is improved by gradient ascent on J(theta) = E_tau[sum_t gamma^t r_t], using only
sampled episodes. The likelihood-ratio trick grad p(tau) = p(tau) grad log p(tau), with
log p(tau) = log p(s_0) + sum_t [log pi(a_t|s_t) + log P(s_{t+1}|s_t,a_t)], removes the unknown dynamics P:

    grad J = E[ sum_t grad log pi(a_t|s_t) * R(tau) ]                       (Williams 1992)
           = E[ sum_t grad log pi(a_t|s_t) * G_t ],  G_t = sum_{k>=t} gamma^(k-t) r_k   (reward-to-go)
           = E[ sum_t grad log pi(a_t|s_t) * (G_t - b(s_t)) ]                 (baseline)

Reward-to-go: rewards before t do not depend on a_t, so their terms average to zero and only add noise.
Baseline: for any b(s), E_{a~pi}[grad log pi(a|s) b(s)] = b(s) grad sum_a pi(a|s) = b(s) grad 1 = 0, so
subtracting b keeps the estimate unbiased; b(s) = V(s) ~ E[G_t | s_t] makes G_t - b(s_t) small and so lowers
its variance. V is a second network fitted to G_t by least squares. The update per rollout is

    policy:  theta <- theta + lr * mean_t[ grad log pi(a_t|s_t) * A_t ] + ent_coef * grad H[pi]
    value:   phi   <- phi   - vf_lr * grad mean_t[ (V_phi(s_t) - G_t)^2 ]   (vf_iters times)

Papers: Williams 1992, "Simple statistical gradient-following algorithms for connectionist reinforcement
learning" (Machine Learning 8); Sutton et al. 2000, "Policy gradient methods for RL with function
approximation" (NeurIPS); Schulman et al. 2015, arXiv:1506.02438 (section 2, baselines and reward-to-go).

Departures from the paper, all common practice (Spinning Up's VPG does the same):
- The gamma^t factor in front of each term is dropped: a discounted *state weighting* helps nothing here.
- Each update uses a fixed amount of experience, --num-steps from each of --num-envs environments, so an
  episode can be cut by the end of a rollout. Such a cut is treated like a time-limit truncation.
- Advantages can be normalised per batch (--norm-adv, off by default), and an entropy bonus is available
  (--ent-coef, 0 by default).
- With --no-reward-to-go every step of an episode is weighted by the return from the episode's first step
  in the rollout, minus the baseline at that first state (the original REINFORCE; same mean, more variance).

Episode boundaries. Gymnasium 1.x vector envs reset a finished sub-environment inside the same step
(autoreset mode SAME_STEP): `obs` is then already the next episode's first observation and the true last
one is in info["final_obs"]. Returns never cross from one episode into the next. A *terminated* episode
(the MDP ended) adds nothing after its last reward. A *truncated* episode (time limit) or one cut by the
rollout's end would have gone on, so its return is completed with gamma * V(s_final), the baseline's value
of the true final observation. A step that is both (gymnasium's TimeLimit also truncates an episode that
terminates on its last allowed step) counts as terminated: nothing follows it. With --baseline none there
is no V, and such tails count as zero: keep --num-steps longer than an episode then.

Usage:
    python reinforce.py                                  # CartPole-v1, learned baseline, reward-to-go
    python reinforce.py --baseline none --no-reward-to-go  # the original 1992 estimator
    python reinforce.py --env-id Pendulum-v1 --total-timesteps 1000000 --num-steps 1000
    python reinforce.py --save-model --checkpoint-every 50000      # model.pt at the end, checkpoint.pt on the way
    python reinforce.py --resume runs/CartPole-v1__reinforce__1__1700000000/checkpoint.pt  # after Ctrl-C (exit 130)
    python reinforce.py --evaluate runs/.../model.pt --eval-episodes 20 --capture-video  # no training

TensorBoard keys:
    charts/episodic_return    undiscounted return of each finished training episode
    charts/episodic_length    length of that episode, env steps
    charts/SPS                environment steps per second since the start
    losses/policy_loss        -mean(log pi(a|s) * A), the surrogate whose gradient is the estimator
    losses/value_loss         mean (V(s) - G)^2 before the value update (absent with --baseline none)
    losses/entropy            mean entropy of the policy over the batch, nats
    losses/explained_variance 1 - Var(G - V) / Var(G): how much of the return the baseline predicts
    eval/episodic_return      return of each evaluation episode of the saved policy (deterministic actions)
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
    """seed of python, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """make cuDNN deterministic (torch.backends.cudnn.deterministic)"""
    cuda: bool = True
    """use CUDA when it is available"""
    save_model: bool = False
    """save the policy and baseline to {run folder}/model.pt at the end"""
    eval_episodes: int = 10
    """episodes to evaluate the final (saved, if --save-model) policy with deterministic actions; 0 skips"""
    capture_video: bool = False
    """record the evaluation episodes to {run folder}/videos (needs moviepy)"""
    progress: bool = True
    """show a progress bar (plain periodic lines when stdout is not a terminal)"""
    torch_threads: int = 1
    """torch's CPU threads, 0 for torch's default (one per core); why 1: benchmarks/README.md#threads"""
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
    env_id: str = "CartPole-v1"
    """gymnasium environment id, with a Discrete or Box action space"""
    total_timesteps: int = 200_000
    """total environment steps, summed over all environments"""
    num_envs: int = 4
    """parallel environments (gymnasium SyncVectorEnv)"""
    # keep --num-steps longer than most episodes, so that few are cut by the end of a rollout
    num_steps: int = 512
    """environment steps taken in each environment per update (batch = num_envs * num_steps)"""
    # Algorithm
    gamma: float = 0.99
    """discount factor, in [0, 1]"""
    baseline: Literal["value", "none"] = "value"
    """b(s) subtracted from the return: a learned value network V(s), or none"""
    reward_to_go: bool = True
    """weight log pi(a_t|s_t) by the return from t on (else by the return from the episode's first step)"""
    # off by default: once every episode scores the same the advantages are noise, and normalising blows that
    # noise up to full-size updates
    norm_adv: bool = False
    """normalise the advantages of each batch to mean 0, std 1"""
    ent_coef: float = 0.0
    """weight of the entropy bonus in the policy loss"""
    learning_rate: float = 0.003
    """Adam learning rate of the policy"""
    vf_learning_rate: float = 0.01
    """Adam learning rate of the value network"""
    vf_iters: int = 5
    """full-batch gradient steps on the value loss per update"""
    hidden_size: int = 64
    """units in each of the two hidden layers of the policy and value networks"""
    # Derived (not flags)
    batch_size: int = dataclasses.field(init=False, default=0)
    """num_envs * num_steps, environment steps per update"""
    num_updates: int = dataclasses.field(init=False, default=0)
    """total_timesteps // batch_size"""


# 3. Networks
def mlp(in_dim: int, out_dim: int, hidden: int, out_gain: float) -> nn.Sequential:
    """Two tanh hidden layers, orthogonal init; a small out_gain starts the policy near uniform."""
    layers = [nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, out_dim)]
    for layer, gain in zip(layers[::2], (np.sqrt(2), np.sqrt(2), out_gain)):
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class Policy(nn.Module):
    """Categorical over logits for Discrete actions; diagonal Gaussian, state-independent std, for Box."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: int):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out = action_space.n if self.discrete else action_space.shape[0]
        self.net = mlp(obs_dim, out, hidden, out_gain=0.01)
        self.log_std = None if self.discrete else nn.Parameter(torch.zeros(out))

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs)
        if self.discrete:  # Gumbel-max: argmax(logits + Gumbel noise) ~ softmax(logits), and faster than multinomial
            return (out - torch.empty_like(out).exponential_().log()).argmax(-1)
        return out + self.log_std.exp() * torch.randn_like(out)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs)
        return out.argmax(-1) if self.discrete else out

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(obs)
        if self.discrete:
            return categorical_log_prob(out, actions), categorical_entropy(out)
        return gaussian_log_prob(out, self.log_std, actions), gaussian_entropy(self.log_std).expand(out.shape[:-1])


# 4. Targets and losses
def discounted_returns(rewards, ends, next_values, gamma: float) -> torch.Tensor:
    """Reward-to-go G_t = r_t + gamma * (next_values_t if ends_t else G_{t+1}).

    rewards, next_values: (T, N) float; ends: (T, N) bool, True where the bookkeeping of an episode stops
    after step t: terminated (next_values_t = 0), truncated (V of the true final obs) or t = T-1 (V(s_T)).
    ends[T-1] must be True. Returns (T, N).
    """
    returns = torch.empty_like(rewards)
    future = next_values[-1]
    for t in reversed(range(rewards.shape[0])):
        future = rewards[t] + gamma * torch.where(ends[t], next_values[t], future)
        returns[t] = future
    return returns


def from_episode_start(x: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """x (T, N) -> (T, N): each step gets x at the first step of its episode within the rollout."""
    out = x.clone()
    for t in range(1, x.shape[0]):
        out[t] = torch.where(ends[t - 1], x[t], out[t - 1])
    return out


def categorical_log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """logits (B, A), actions (B,) long -> log pi(a|s) (B,)."""
    return logits.log_softmax(-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """logits (B, A) -> H = -sum_a p log p (B,)."""
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """mean (B, D), log_std (D,), actions (B, D) -> sum_d log N(a_d; mean_d, std_d) (B,)."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """log_std (D,) -> sum_d (0.5 + 0.5 log(2 pi) + log_std_d), a scalar."""
    return (0.5 + 0.5 * np.log(2 * np.pi) + log_std).sum()


# 5. Training loop
def main(args: Args) -> dict:
    # SETUP
    if args.evaluate is not None:
        return evaluate_saved(args, "reinforce.py", saved_evaluation)
    checkpoint = load_checkpoint(args.resume, "reinforce.py") if args.resume else None
    args = resume_args(args, checkpoint["args"]) if checkpoint else args  # the run's own flags (resume_args)
    probe_env = validate(args)
    num_envs, num_steps = args.num_envs, args.num_steps
    args.batch_size = num_envs * num_steps
    args.num_updates = args.total_timesteps // args.batch_size
    say_rounded(args.total_timesteps, args.num_updates * args.batch_size, f"updates of {args.batch_size} steps")
    device = setup_torch(args.seed, args.cuda, args.torch_threads, args.torch_deterministic)

    obs_dim = probe_env.observation_space.shape[0]
    policy = Policy(obs_dim, probe_env.action_space, args.hidden_size).to(device)
    value = mlp(obs_dim, 1, args.hidden_size, out_gain=1.0).to(device)
    policy_optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate)
    value_optimizer = torch.optim.Adam(value.parameters(), lr=args.vf_learning_rate)
    modules = {"policy": policy, "value": value, "policy_optimizer": policy_optimizer}
    modules["value_optimizer"] = value_optimizer
    global_step, start_update, run_dir = restore(checkpoint, modules, {"global_step": 0, "update": 0, "run_dir": None})
    if checkpoint is not None:
        saved_total = checkpoint["args"]["total_timesteps"]
        say_where_resumed(global_step, args.total_timesteps, saved_total, "no schedule to keep")
        del checkpoint
    run_dir = run_dir or new_run_dir(args.env_id, args.exp_name, args.seed)
    writer = open_run(args, run_dir, resumed_at=global_step if args.resume else None)
    # the environments restart from new episodes on resume: their state is not saved
    envs = make_envs(args.env_id, num_envs)
    envs.action_space.seed(args.seed + global_step)
    use_baseline = args.baseline == "value"
    rollout = make_rollout(num_steps, num_envs, probe_env.observation_space, probe_env.action_space, device)
    low, high = (None, None) if policy.discrete else (probe_env.action_space.low, probe_env.action_space.high)
    probe_env.close()
    stop = catch_stop_signals()  # finish the update in progress, then checkpoint and exit

    # LOOP
    start_time, start_step, sps = time.time(), global_step, 0
    episodic_returns, episodic_steps, recent_returns = [], [], deque(maxlen=20)
    ep_return, ep_length = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    progress = ProgressReport(args.num_updates * args.batch_size, global_step, args.progress)
    next_obs, _ = envs.reset(seed=args.seed + global_step)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
    for update in range(start_update, args.num_updates):
        rollout.next_values.zero_()
        for t in range(num_steps):
            # ACT
            with torch.no_grad():
                action = policy.sample(next_obs)
            env_action = action.cpu().numpy()
            if low is not None:
                env_action = np.clip(env_action, low, high)

            # STEP
            obs = next_obs
            next_obs_np, rewards, terminations, truncations, infos = envs.step(env_action)
            next_obs = torch.as_tensor(next_obs_np, dtype=torch.float32, device=device)
            global_step += num_envs
            dones = terminations | truncations

            # RECORD EPISODES
            ep_return += rewards
            ep_length += 1
            for i in np.flatnonzero(dones):
                episodic_returns.append(float(ep_return[i]))
                episodic_steps.append(global_step)
                recent_returns.append(float(ep_return[i]))
                writer.add_scalar("charts/episodic_return", ep_return[i], global_step)
                writer.add_scalar("charts/episodic_length", ep_length[i], global_step)
            ep_return[dones], ep_length[dones] = 0.0, 0

            # STORE
            rollout.obs[t] = obs
            rollout.actions[t] = action
            rollout.rewards[t] = torch.as_tensor(rewards, device=device)
            rollout.terminations[t] = torch.as_tensor(terminations, device=device)
            rollout.truncations[t] = torch.as_tensor(truncations, device=device)
            # bootstrap a time limit from the true final observation; where the episode also terminated (a time
            # limit that falls on the last step sets both), termination wins: nothing follows
            bootstrap = truncations & ~terminations
            if use_baseline and bootstrap.any():
                final_obs = np.stack(infos["final_obs"][bootstrap])
                with torch.no_grad():
                    final_values = value(torch.as_tensor(final_obs, dtype=torch.float32, device=device))
                rollout.next_values[t, torch.as_tensor(bootstrap, device=device)] = final_values.squeeze(-1)

        # LEARN
        ends = rollout.terminations | rollout.truncations
        if use_baseline:  # the rollout's end cuts the episodes still running: bootstrap from V(s_T)
            with torch.no_grad():
                rollout.next_values[-1] = torch.where(ends[-1], rollout.next_values[-1], value(next_obs).squeeze(-1))
        ends[-1] = True
        returns = discounted_returns(rollout.rewards, ends, rollout.next_values, args.gamma)
        with torch.no_grad():
            values = value(rollout.obs).squeeze(-1) if use_baseline else torch.zeros_like(returns)
        advantages = returns - values
        if not args.reward_to_go:
            advantages = from_episode_start(advantages, ends)
        b_obs, b_actions = rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1)
        b_returns, b_advantages = returns.flatten(), advantages.flatten()
        if args.norm_adv:
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)

        logp, entropy = policy.log_prob_entropy(b_obs, b_actions)
        policy_loss = -(logp * b_advantages).mean()
        policy_optimizer.zero_grad()
        (policy_loss - args.ent_coef * entropy.mean()).backward()
        policy_optimizer.step()

        if use_baseline:
            for i in range(args.vf_iters):
                value_loss = (value(b_obs).squeeze(-1) - b_returns).pow(2).mean()
                if i == 0:
                    first_value_loss = value_loss.item()
                value_optimizer.zero_grad()
                value_loss.backward()
                value_optimizer.step()

        # LOG
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("losses/policy_loss", policy_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy.mean().item(), global_step)
        if use_baseline:
            writer.add_scalar("losses/value_loss", first_value_loss, global_step)
            explained = 1 - (b_returns - values.flatten()).var() / (b_returns.var() + 1e-8)
            writer.add_scalar("losses/explained_variance", explained.item(), global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        progress.update(global_step, sps, recent_returns)
        end = args.num_updates * args.batch_size
        if checkpoint_due(stop, args.checkpoint_every, global_step - args.batch_size, global_step, end):
            state = {"global_step": global_step, "update": update + 1, "run_dir": run_dir}
            write_checkpoint(os.path.join(run_dir, "checkpoint.pt"), args, "reinforce.py", modules, state)
        if stop["signal"] is not None:
            break
    release_stop_signals()
    progress.close()
    envs.close()

    # TEARDOWN
    evaluation = partial(evaluate, policy, args.env_id, args.eval_episodes, args.seed + 10_000)
    networks = {"policy": policy, "value": value}
    eval_returns, _, saved = finish_training(args, "reinforce.py", stop, networks, evaluation, writer)
    close_run(writer, args.track)
    print_summary(run_dir, global_step, global_step - start_step, time.time() - start_time, recent_returns, saved)
    result = {"run_dir": run_dir, "global_step": global_step, "episodic_returns": episodic_returns, "sps": sps}
    result |= {"episodic_steps": episodic_steps, "eval_returns": eval_returns, "signal": stop["signal"]}
    result |= {"interrupted": stop["signal"] is not None}
    result["final_return"] = float(np.mean(recent_returns)) if recent_returns else float("nan")
    return result


# 6. Environment
def make_env(env_id: str):
    """One environment. Episode statistics are tracked in the loop, Box actions are clipped there."""
    return lambda: gym.make(env_id)


def make_envs(env_id: str, num_envs: int) -> gym.vector.SyncVectorEnv:
    """N environments stepped in lockstep, reset inside the step that ends an episode (see the header)."""
    return gym.vector.SyncVectorEnv(
        [make_env(env_id) for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


# 7. Storage: on-policy, no replay; one rollout of (num_steps, num_envs) tensors, refilled every update
@dataclass
class Rollout:
    obs: torch.Tensor  # (T, N, *obs_shape)
    actions: torch.Tensor  # (T, N) Discrete, (T, N, action_dim) Box
    rewards: torch.Tensor  # (T, N)
    terminations: torch.Tensor  # (T, N) bool: the MDP ended after step t
    truncations: torch.Tensor  # (T, N) bool: a time limit cut the episode after step t
    next_values: torch.Tensor  # (T, N) V(true final obs) where truncated, V(s_T) at t = T-1, else 0


def make_rollout(T: int, N: int, obs_space: gym.Space, action_space: gym.Space, device) -> Rollout:
    zeros = lambda *shape, dtype=torch.float32: torch.zeros((T, N, *shape), dtype=dtype, device=device)
    discrete = isinstance(action_space, gym.spaces.Discrete)
    return Rollout(
        obs=zeros(*obs_space.shape),
        actions=zeros(dtype=torch.long) if discrete else zeros(*action_space.shape),
        rewards=zeros(),
        terminations=zeros(dtype=torch.bool),
        truncations=zeros(dtype=torch.bool),
        next_values=zeros(),
    )


# 8. Plumbing
def supported_env_ids() -> list[str]:
    """The ids a typo is matched against: gymnasium's own families with vector observations (classic control,
    Box2D, MuJoCo) and a user's registered ids; not toy text (discrete observations) or the JAX versions under
    phys2d/ and tabular/."""
    return [k for k, spec in gym.registry.items() if spec.namespace is None and "toy_text" not in str(spec.entry_point)]


def validate(args: Args) -> gym.Env:
    """Check every flag before any work; return one probe environment to read the spaces from."""
    sizes = "total_timesteps num_envs num_steps hidden_size vf_iters learning_rate vf_learning_rate"
    check_ranges(args, positive=sizes, fraction="gamma", non_negative="ent_coef")
    if args.total_timesteps < args.num_envs * args.num_steps:
        fail("--total-timesteps", f"must be at least --num-envs * --num-steps = {args.num_envs * args.num_steps}")
    check_run_flags(args)
    check_env_id(args.env_id, supported_env_ids())
    try:
        env = gym.make(args.env_id)
    except gym.error.DependencyNotInstalled as e:
        fail("--env-id", f"{args.env_id} cannot be created: {e}")
    except ImportError as e:
        fail("--env-id", f"{args.env_id} cannot be created, a package is missing: {e}")
    if args.capture_video:
        check_video(lambda: gym.make(args.env_id, render_mode="rgb_array"))
    if not (
        isinstance(env.action_space, gym.spaces.Discrete)
        or (isinstance(env.action_space, gym.spaces.Box) and len(env.action_space.shape) == 1)
    ):
        fail("--env-id", f"{args.env_id} has action space {env.action_space}; valid: Discrete or 1-D Box")
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        fail("--env-id", f"{args.env_id} has observation space {env.observation_space}; valid: 1-D Box")
    return env


def evaluate(policy: Policy, env_id: str, episodes: int, seed: int, video_dir=None) -> tuple:
    """Run the policy's deterministic action (argmax or mean) for whole episodes; return their returns (and None:
    no success to report)."""
    device = next(policy.parameters()).device
    env = gym.make(env_id, **({"render_mode": "rgb_array"} if video_dir else {}))  # only a renderer takes one
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            with torch.no_grad():
                action = policy.mode(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
            if not policy.discrete:
                action = np.clip(action, env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns, None


def saved_evaluation(args: Args, saved: dict, device):
    """--evaluate: the saved policy, for evaluate_saved; deterministic actions."""
    probe_env = validate(args)
    policy = Policy(probe_env.observation_space.shape[0], probe_env.action_space, args.hidden_size).to(device)
    policy.load_state_dict(saved["policy"])
    probe_env.close()
    return partial(evaluate, policy, args.env_id, args.eval_episodes, args.seed + 10_000)


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
