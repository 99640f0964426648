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
  in the rollout, minus the baseline at that first state: the original REINFORCE, with more variance and,
  for gamma < 1, another mean (G_0 weights step t's term by gamma^t, the factor dropped above).

Episode boundaries. Gymnasium 1.x vector envs reset a finished sub-environment inside the same step
(autoreset mode SAME_STEP): `obs` is then already the next episode's first observation and the true last
one is in info["final_obs"]. Returns never cross from one episode into the next. A *terminated* episode
(the MDP ended) adds nothing after its last reward. A *truncated* one (time limit, or cut by the rollout's
end) is completed with gamma * V(s_final), V of its true final observation; one that is both terminated.
With --baseline none such tails count as zero: keep --num-steps longer than an episode then.

Usage:
    python reinforce.py --baseline none --no-reward-to-go       # the original 1992 estimator
    python reinforce.py --save-model --checkpoint-every 50000   # then --resume .../checkpoint.pt, --evaluate model.pt

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
    args, checkpoint = load_run(args, "reinforce.py", schedules="no schedule to keep")  # --resume or --evaluate
    probe_env = validate(args)
    device = setup_torch(args.seed, args.cuda, args.torch_threads, args.torch_deterministic)

    obs_dim = probe_env.observation_space.shape[0]
    policy = Policy(obs_dim, probe_env.action_space, args.hidden_size).to(device)
    value = mlp(obs_dim, 1, args.hidden_size, out_gain=1.0).to(device)
    evaluation = partial(evaluate, policy, args.env_id, args.eval_episodes, args.seed + 10_000)
    if args.evaluate:  # no training: the saved policy's evaluation episodes, in a new run folder
        policy.load_state_dict(checkpoint["policy"])
        writer = open_run(args)
        eval_returns = finish_run(args, "reinforce.py", writer, {"signal": None}, {}, evaluation)[0]
        return {"run_dir": writer.log_dir, "global_step": 0, "eval_returns": eval_returns, "signal": None}
    num_envs, num_steps = args.num_envs, args.num_steps
    args.batch_size = num_envs * num_steps
    args.num_updates = args.total_timesteps // args.batch_size
    if (steps := args.num_updates * args.batch_size) != args.total_timesteps:
        unit = f"updates of {args.batch_size} steps"
        print(f"note: --total-timesteps {args.total_timesteps} runs as {steps}, a whole number of {unit}")
        args.total_timesteps = steps  # what runs, and what its checkpoints say: resuming the last trains nothing
    policy_optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate)
    value_optimizer = torch.optim.Adam(value.parameters(), lr=args.vf_learning_rate)
    modules = {"policy": policy, "value": value, "policy_optimizer": policy_optimizer}
    modules["value_optimizer"] = value_optimizer
    state = restore(checkpoint, modules, {"global_step": 0, "update": 0, "run_dir": None})
    global_step, checkpoint = state["global_step"], None
    writer = open_run(args, state["run_dir"], resumed_at=global_step if args.resume else None)
    run_dir = writer.log_dir
    envs = make_envs(args.env_id, num_envs)  # a resumed run starts new episodes: their state is not saved
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
    for update in range(state["update"], args.num_updates):
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
    catch_stop_signals(False)
    progress.bar.stop()
    envs.close()

    # TEARDOWN
    summary = (global_step, global_step - start_step, time.time() - start_time, recent_returns, "")
    networks = {"policy": policy, "value": value}
    eval_returns, _ = finish_run(args, "reinforce.py", writer, stop, networks, evaluation, summary)
    result = {"run_dir": run_dir, "global_step": global_step, "episodic_returns": episodic_returns, "sps": sps}
    return result | {"episodic_steps": episodic_steps, "eval_returns": eval_returns, "signal": stop["signal"]}


# 6. Environment
def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One environment (episode statistics are tracked in the loop, Box actions clipped there); Discrete and
    MultiDiscrete observations become one-hot float vectors: a network should not read categories as numbers."""
    env = gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))  # only a renderer takes one
    onehot = isinstance(env.observation_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete)
    return gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.float32) if onehot else env


def make_envs(env_id: str, num_envs: int) -> gym.vector.SyncVectorEnv:
    """N environments stepped in lockstep, reset inside the step that ends an episode (see the header)."""
    return gym.vector.SyncVectorEnv(
        [partial(make_env, env_id)] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
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
    actions = zeros(dtype=torch.long) if isinstance(action_space, gym.spaces.Discrete) else zeros(*action_space.shape)
    return Rollout(zeros(*obs_space.shape), actions, zeros(), zeros(dtype=torch.bool), zeros(dtype=torch.bool), zeros())


# 8. Plumbing
def validate(args: Args) -> gym.Env:
    """Check every flag before any work; return one probe environment to read the spaces from."""
    sizes = "total_timesteps num_envs num_steps hidden_size vf_iters learning_rate vf_learning_rate"
    make = partial(make_env, args.env_id)
    env = check_args(args, make, positive=sizes, fraction="gamma", non_negative="ent_coef")
    if args.total_timesteps < args.num_envs * args.num_steps:
        fail("--total-timesteps", f"must be at least --num-envs * --num-steps = {args.num_envs * args.num_steps}")
    if args.norm_adv and args.num_envs * args.num_steps == 1:
        fail("--norm-adv", "needs a batch of at least 2 steps (--num-envs * --num-steps) to take a standard deviation")
    vector = lambda space: isinstance(space, gym.spaces.Box) and len(space.shape) == 1
    if not (isinstance(env.action_space, gym.spaces.Discrete) or vector(env.action_space)):
        fail("--env-id", f"{args.env_id} has action space {env.action_space}; valid: Discrete or 1-D Box")
    if not vector(env.observation_space):
        fail("--env-id", f"{args.env_id} has observation space {env.observation_space}; valid: 1-D Box")
    return env


def evaluate(policy: Policy, env_id: str, episodes: int, seed: int, video_dir=None) -> tuple:
    """The policy's deterministic action (argmax or mean) for whole episodes: (their returns, None)."""
    device = next(policy.parameters()).device
    env = make_env(env_id, "rgb_array" if video_dir else None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            with torch.no_grad():
                action = policy.mode(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
            action = int(action) if policy.discrete else np.clip(action, env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
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
