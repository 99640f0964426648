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
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

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
    # Environment
    env_id: str = "CartPole-v1"
    """gymnasium environment id, with a Discrete or Box action space"""
    total_timesteps: int = 200_000
    """total environment steps, summed over all environments"""
    num_envs: int = 4
    """parallel environments (gymnasium SyncVectorEnv)"""
    num_steps: int = 512
    """environment steps taken in each environment per update (batch = num_envs * num_steps); keep it longer
    than most episodes, so that few are cut by the end of a rollout"""
    # Algorithm
    gamma: float = 0.99
    """discount factor, in [0, 1]"""
    baseline: Literal["value", "none"] = "value"
    """b(s) subtracted from the return: a learned value network V(s), or none"""
    reward_to_go: bool = True
    """weight log pi(a_t|s_t) by the return from t on (else by the return from the episode's first step)"""
    norm_adv: bool = False
    """normalise the advantages of each batch to mean 0, std 1 (off: once every episode scores the same, the
    advantages are noise, and normalising blows that noise up to full-size updates)"""
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


# 3. Environment
def make_env(env_id: str):
    """One environment. Episode statistics are tracked in the loop, Box actions are clipped there."""
    return lambda: gym.make(env_id)


def make_envs(env_id: str, num_envs: int) -> gym.vector.SyncVectorEnv:
    """N environments stepped in lockstep, reset inside the step that ends an episode (see the header)."""
    return gym.vector.SyncVectorEnv(
        [make_env(env_id) for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


# 4. Storage: on-policy, no replay; one rollout of (num_steps, num_envs) tensors, refilled every update
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


# 5. Networks
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


# 6. Targets and losses
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


def fail(flag: str, message: str):
    """Bad input: one line naming the flag, exit status 2, no traceback."""
    print(f"error: {flag}: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_env_id(env_id: str):
    """--env-id: a registered id, or gymnasium's "module:EnvId" form, whose module is imported to register it."""
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            fail("--env-id", f"cannot import {module!r} for {env_id!r} (is its folder on PYTHONPATH?): {e}")
    if name not in gym.registry:
        close = difflib.get_close_matches(name, list(gym.registry), n=3)
        fail("--env-id", f"unknown environment {env_id!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))


def validate(args: Args) -> gym.Env:
    """Check every flag before any work; return one probe environment to read the spaces from."""
    for flag, value in [
        ("--total-timesteps", args.total_timesteps),
        ("--num-envs", args.num_envs),
        ("--num-steps", args.num_steps),
        ("--hidden-size", args.hidden_size),
        ("--vf-iters", args.vf_iters),
    ]:
        if value <= 0:
            fail(flag, f"must be a positive integer, got {value}")
    if args.total_timesteps < args.num_envs * args.num_steps:
        fail("--total-timesteps", f"must be at least --num-envs * --num-steps = {args.num_envs * args.num_steps}")
    if not 0.0 <= args.gamma <= 1.0:
        fail("--gamma", f"must be in [0, 1], got {args.gamma}")
    for flag, value in [("--learning-rate", args.learning_rate), ("--vf-learning-rate", args.vf_learning_rate)]:
        if not value > 0:
            fail(flag, f"must be positive, got {value}")
    if args.ent_coef < 0:
        fail("--ent-coef", f"must be non-negative, got {args.ent_coef}")
    for flag, value in [("--seed", args.seed), ("--eval-episodes", args.eval_episodes)]:
        if value < 0:
            fail(flag, f"must be 0 or more, got {value}")
    if args.capture_video and args.eval_episodes == 0:
        fail("--capture-video", "records the evaluation episodes, so it needs --eval-episodes of at least 1")
    check_env_id(args.env_id)
    try:
        env = gym.make(args.env_id)
    except gym.error.DependencyNotInstalled as e:
        fail("--env-id", f"{args.env_id} cannot be created: {e}")
    except ImportError as e:
        fail("--env-id", f"{args.env_id} cannot be created, a package is missing: {e}")
    if args.capture_video:
        if importlib.util.find_spec("moviepy") is None:
            fail("--capture-video", "needs moviepy to write videos: pip install moviepy")
        try:
            with gym.make(args.env_id, render_mode="rgb_array") as video_env:
                video_env.reset(seed=0)
                video_env.render()
        except (gym.error.DependencyNotInstalled, TypeError) as e:  # TypeError: a constructor without render_mode
            fail("--capture-video", f"{args.env_id} cannot render: {e}")
    if not (
        isinstance(env.action_space, gym.spaces.Discrete)
        or (isinstance(env.action_space, gym.spaces.Box) and len(env.action_space.shape) == 1)
    ):
        fail("--env-id", f"{args.env_id} has action space {env.action_space}; valid: Discrete or 1-D Box")
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        fail("--env-id", f"{args.env_id} has observation space {env.observation_space}; valid: 1-D Box")
    return env


class ProgressReport:
    """A rich progress bar on a terminal, a plain line every 10% otherwise, nothing with --no-progress."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.next_line = total, enabled, 0
        self.bar = None
        if enabled and sys.stdout.isatty():
            self.bar = Progress(
                TextColumn("[bold]steps"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[sps]} SPS"),
                TimeRemainingColumn(),
                TextColumn("return {task.fields[ret]}"),
            )
            self.task = self.bar.add_task("train", total=total, sps=0, ret="-")
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


def evaluate(policy: Policy, env_id: str, episodes: int, seed: int, video_dir: str | None, device) -> list[float]:
    """Run the policy's deterministic action (argmax or mean) for whole episodes; return their returns."""
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
    return returns


def main(args: Args) -> dict:
    # 7. Setup
    probe_env = validate(args)
    args.batch_size = args.num_envs * args.num_steps
    args.num_updates = args.total_timesteps // args.batch_size
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    unix_time = int(time.time())
    while os.path.exists(run_dir := f"runs/{args.env_id}__{args.exp_name}__{args.seed}__{unix_time}"):
        unix_time += 1  # never write into an earlier run's folder
    writer = SummaryWriter(run_dir)
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
    )

    envs = make_envs(args.env_id, args.num_envs)
    envs.action_space.seed(args.seed)
    obs_dim = probe_env.observation_space.shape[0]
    policy = Policy(obs_dim, probe_env.action_space, args.hidden_size).to(device)
    value = mlp(obs_dim, 1, args.hidden_size, out_gain=1.0).to(device)
    policy_optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate)
    value_optimizer = torch.optim.Adam(value.parameters(), lr=args.vf_learning_rate)
    use_baseline = args.baseline == "value"
    T, N = args.num_steps, args.num_envs
    rollout = make_rollout(T, N, probe_env.observation_space, probe_env.action_space, device)
    low, high = (None, None) if policy.discrete else (probe_env.action_space.low, probe_env.action_space.high)
    probe_env.close()

    # 8. Loop
    global_step, start_time = 0, time.time()
    episodic_returns, episodic_steps, recent_returns = [], [], deque(maxlen=20)
    ep_return, ep_length = np.zeros(N), np.zeros(N, dtype=np.int64)
    progress = ProgressReport(args.num_updates * args.batch_size, args.progress)
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
    for update in range(args.num_updates):
        rollout.next_values.zero_()
        for t in range(T):
            # ACT
            with torch.no_grad():
                action = policy.sample(next_obs)
            env_action = action.cpu().numpy()
            if low is not None:
                env_action = np.clip(env_action, low, high)

            # STEP
            obs = next_obs
            next_obs_np, reward, terminated, truncated, info = envs.step(env_action)
            next_obs = torch.as_tensor(next_obs_np, dtype=torch.float32, device=device)
            global_step += N

            # RECORD EPISODES
            ep_return += reward
            ep_length += 1
            for i in np.flatnonzero(terminated | truncated):
                episodic_returns.append(float(ep_return[i]))
                episodic_steps.append(global_step)
                recent_returns.append(float(ep_return[i]))
                writer.add_scalar("charts/episodic_return", ep_return[i], global_step)
                writer.add_scalar("charts/episodic_length", ep_length[i], global_step)
                ep_return[i], ep_length[i] = 0.0, 0

            # STORE
            rollout.obs[t] = obs
            rollout.actions[t] = action
            rollout.rewards[t] = torch.as_tensor(reward, device=device)
            rollout.terminations[t] = torch.as_tensor(terminated, device=device)
            rollout.truncations[t] = torch.as_tensor(truncated, device=device)
            # bootstrap a time limit from the true final observation; where the episode also terminated (a time
            # limit that falls on the last step sets both), termination wins: nothing follows
            bootstrap = truncated & ~terminated
            if use_baseline and bootstrap.any():
                final_obs = np.stack(info["final_obs"][bootstrap])
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
        sps = int(global_step / (time.time() - start_time))
        writer.add_scalar("losses/policy_loss", policy_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy.mean().item(), global_step)
        if use_baseline:
            writer.add_scalar("losses/value_loss", first_value_loss, global_step)
            explained = 1 - (b_returns - values.flatten()).var() / (b_returns.var() + 1e-8)
            writer.add_scalar("losses/explained_variance", explained.item(), global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        progress.update(global_step, sps, recent_returns)
    progress.close()
    envs.close()

    # 9. Teardown
    model_path = None
    if args.save_model:
        model_path = os.path.join(run_dir, "model.pt")
        state = {"args": vars(args), "policy": policy.state_dict(), "value": value.state_dict()}
        torch.save(state, model_path + ".tmp")
        os.replace(model_path + ".tmp", model_path)  # atomic: a crash never leaves a half-written model
        print(f"model saved to {model_path}")
    eval_returns = []
    if args.eval_episodes > 0:
        if model_path:  # evaluate what was saved, exactly as a user would load it
            policy.load_state_dict(torch.load(model_path, map_location=device)["policy"])
        video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
        eval_returns = evaluate(policy, args.env_id, args.eval_episodes, args.seed + 10_000, video_dir, device)
        for i, r in enumerate(eval_returns):
            writer.add_scalar("eval/episodic_return", r, i)
        print(f"eval: mean return {np.mean(eval_returns):.1f} over {len(eval_returns)} episodes")
    writer.close()
    return {
        "run_dir": run_dir,
        "global_step": global_step,
        "episodic_returns": episodic_returns,
        "episodic_steps": episodic_steps,
        "final_return": float(np.mean(recent_returns)) if recent_returns else float("nan"),
        "eval_returns": eval_returns,
        "sps": sps,
    }


if __name__ == "__main__":
    main(tyro.cli(Args))
