"""Synchronous advantage actor-critic (A2C) with Generalized Advantage Estimation, on many parallel envs.

An actor pi_theta(a|s) and a critic V(s) learn together from short rollouts: T steps in each of N
environments, then one gradient step. The policy gradient of REINFORCE, E[grad log pi(a_t|s_t) A_t], needs
an estimate of the advantage A_t. The critic's one-step TD residual

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)          (V(s_{t+1}) = 0 if the episode terminated at t)

is one, with low variance but biased by V's errors. GAE (Schulman et al. 2015) averages all k-step
estimates with weights (1 - lambda) lambda^(k-1), which sums to

    A_t = sum_{l >= 0} (gamma lambda)^l delta_{t+l},  computed backwards as  A_t = delta_t + gamma lambda A_{t+1}

lambda = 0 gives A_t = delta_t, the one-step TD residual (most bias, least variance). lambda = 1 telescopes:
sum_l gamma^l delta_{t+l} = sum_l gamma^l r_{t+l} + gamma^k V(s_{t+k}) - V(s_t), the discounted return minus
the value, i.e. REINFORCE with a baseline (Monte Carlo up to the end of the rollout, where it bootstraps).
In between, lambda trades bias for variance. The loss, one optimiser step per rollout, is

    L = -mean(log pi(a_t|s_t) A_t) + vf_coef * mean((V(s_t) - (A_t + V_old(s_t)))^2) - ent_coef * mean(H[pi(.|s_t)])

with the gradient norm clipped to max_grad_norm. Papers: Mnih et al. 2016, "Asynchronous methods for deep
RL", arXiv:1602.01783 (A3C; this is its synchronous variant, A2C); Schulman et al. 2015, "High-dimensional
continuous control using generalized advantage estimation", arXiv:1506.02438; Mnih et al. 2015, Nature
518:529 (the CNN and the Atari preprocessing).

Departures from A3C: synchronous batches instead of asynchronous workers; Adam instead of shared RMSProp,
with a large epsilon (1e-3) so that its steps shrink with the gradient once the task is solved, which keeps
CartPole from collapsing after it reaches 500; GAE instead of plain k-step returns (lambda = 1 recovers them).
The defaults are tuned for CartPole; for Atari use the flags of the usage line below (those of A2C papers).

Episode boundaries. Environments reset inside the step that ends an episode (gymnasium's SAME_STEP
autoreset), so the true last observation of an episode is info["final_obs"]. The advantage recursion stops at
every episode end. It bootstraps at the end of a rollout from V(s_T), at a truncation (time limit) from V of
the true final observation, never at a termination. On Atari a lost life is a termination for learning
(Mnih et al. 2015) but the game goes on, and the return logged is the game's full unclipped score; with
--recurrent the memory goes on through lost lives too, zeroed only when a new game starts.

Atari ids (ALE/Pong-v5, PongNoFrameskip-v4, ...) run on ale-py's C++ vector environment, with the DeepMind
preprocessing configured in make_envs: 4 frames per action with a max over the last two, up to 30 no-ops
at reset, FIRE at reset, 84x84 grayscale, 4 stacked frames, rewards clipped to their sign for learning.
v5 ids keep their sticky actions (probability 0.25), NoFrameskip-v4 ids have none. --frame-stack 1 (with
--recurrent) gives the network one frame and leaves motion to the LSTM's memory. After a lost life,
Breakout-like games wait for FIRE: in training the sampled actions press it, and evaluation, whose greedy
policy might never pick it and would then stand until the time limit, presses it (as at reset).

Partial observability (--recurrent). Where one observation does not hold all that matters (a frame shows where
the ball is, not where it goes; CartPoleNoVelocity-v1, registered in this file, hides both velocities of
CartPole), a policy needs the past. --recurrent puts an LSTM before the heads: after the trunk where there is
one (the Nature CNN, or --shared), else one in each of the two MLPs, before its last layer (actor and critic
share nothing, as without it). Its memory (h, c) is carried from step to step in each environment and zeroed
where an episode begins, and the heads read its output, a summary of the episode so far, in place of the
observation. The memory before each rollout is kept, and the update replays the rollout through the LSTM from
it: truncated backpropagation through time over --num-steps, the gradient flowing back through the rollout's
steps but never past its first nor across an episode's start, through the very values and log-probabilities
the policy acted with. GAE is unchanged. The classic alternative is --frame-stack K: a feedforward policy
given the last K observations. Evaluation carries its own memory. A checkpoint holds the environments, their
observations and the memory, so that one process resumes its episodes exactly (on the CPU: a GPU's random
stream is not saved); ale-py's vector env cannot be saved, so Atari (and torchrun) resume with new episodes
and a zeroed memory.

Distributed: `torchrun --standalone --nproc_per_node K actor_critic_gae.py ...` runs K processes, each with its own
--num-envs environments (seeded apart) and the same initial networks; their gradients are averaged with
all_reduce before each step, so the replicas stay identical; --norm-adv normalises over all processes'
advantages together. gloo on CPU, NCCL on GPU. Only rank 0 logs,
checkpoints and saves; --total-timesteps counts all processes together. Several machines: run on each
`torchrun --nnodes M --nproc_per_node K --node_rank I --rdzv_backend c10d --rdzv_endpoint HOST:29500 ...`.
Without torchrun the file runs as one plain process and no distributed code is on its path.

Usage:
    python actor_critic_gae.py                                   # CartPole-v1
    python actor_critic_gae.py --gae-lambda 1.0                  # Monte Carlo advantages within a rollout
    python actor_critic_gae.py --env-id PongNoFrameskip-v4 --num-envs 32 --num-steps 5 --learning-rate 7e-4 \
        --adam-eps 1e-5 --vf-coef 0.5 --ent-coef 0.01 --total-timesteps 10000000 --checkpoint-every 1000000
    python actor_critic_gae.py --env-id CartPoleNoVelocity-v1 --recurrent        # velocities hidden: an LSTM
    python actor_critic_gae.py --env-id CartPoleNoVelocity-v1 --frame-stack 4    # or the last 4 observations
    python actor_critic_gae.py --env-id PongNoFrameskip-v4 --recurrent --frame-stack 1 --num-envs 32 --num-steps 20 \
        --learning-rate 7e-4 --adam-eps 1e-5 --vf-coef 0.5 --ent-coef 0.01 --total-timesteps 10000000  # one frame
    torchrun --standalone --nproc_per_node 2 actor_critic_gae.py --no-cuda  # two processes, a free port
    python actor_critic_gae.py --resume runs/CartPole-v1__actor_critic_gae__1__1700000000/checkpoint.pt
    python actor_critic_gae.py --resume runs/.../checkpoint.pt --total-timesteps 1000000  # extend the run
    python actor_critic_gae.py --evaluate runs/.../model.pt --eval-episodes 20 --capture-video  # no training

TensorBoard keys:
    charts/episodic_return    undiscounted (for Atari: unclipped, whole-game) return of each finished episode
    charts/episodic_length    length of that episode, env steps (Atari: agent steps, 4 frames each)
    charts/SPS                environment steps per second, all processes together
    charts/learning_rate      the optimiser's learning rate
    losses/policy_loss        -mean(log pi(a|s) A)
    losses/value_loss         mean (V(s) - target)^2
    losses/entropy            mean entropy of the policy, nats
    losses/explained_variance 1 - Var(target - V) / Var(target)
    losses/grad_norm          gradient norm before clipping
    eval/episodic_return      return of each evaluation episode of the final policy (deterministic actions)
"""

# 1. Imports
import dataclasses
import difflib
import importlib
import importlib.util
import os
import pickle
import random
import re
import signal
import sys
import time
import warnings
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import ale_py
import gymnasium as gym
import numpy as np
import torch
import tyro
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
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
    """save the actor-critic to {run folder}/model.pt at the end"""
    eval_episodes: int = 10
    """episodes to evaluate the final (saved, if --save-model) policy with deterministic actions; 0 skips"""
    capture_video: bool = False
    """record the evaluation episodes to {run folder}/videos (needs moviepy; not for Atari ids)"""
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
    """gymnasium id with vector observations, or an Atari id (ALE/Pong-v5, PongNoFrameskip-v4)"""
    total_timesteps: int = 500_000
    """total environment steps (agent steps on Atari), summed over all environments and processes"""
    num_envs: int = 16
    """parallel environments in each process"""
    num_steps: int = 8
    """environment steps taken in each environment per update (batch = num_envs * num_steps)"""
    frame_stack: Annotated[int | None, tyro.conf.arg(metavar="K")] = None
    """observations stacked into one: the last K Atari frames (default 4) or vector observations (default 1)"""
    # Algorithm
    gamma: float = 0.99
    """discount factor, in [0, 1]"""
    gae_lambda: float = 0.95
    """GAE lambda, in [0, 1]: 0 is the one-step TD residual, 1 the Monte Carlo return minus V"""
    learning_rate: float = 0.006
    """Adam learning rate"""
    # Adam scales every step to about the learning rate, even when the gradient is only noise (as it is once
    # CartPole is solved); where gradients are smaller than epsilon, steps shrink with them
    adam_eps: float = 1e-3
    """Adam's epsilon, added to the root of its second-moment estimate"""
    anneal_lr: bool = False
    """decay the learning rate linearly to 0 over the run"""
    vf_coef: float = 1.0
    """weight of the value loss"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    max_grad_norm: float = 0.5
    """clip the global gradient norm to this"""
    norm_adv: bool = False
    """normalise the advantages of each batch to mean 0, std 1 (under torchrun, the batch of all processes)"""
    shared: bool = False
    """vector observations: one MLP trunk for actor and critic instead of two MLPs (Atari: always shared)"""
    hidden_size: int = 64
    """units in each of the two hidden layers of the MLPs"""
    recurrent: bool = False
    """an LSTM before the heads, its memory carried from step to step (header: Partial observability)"""
    lstm_size: int = 64
    """units of each LSTM of --recurrent"""
    # Derived (not flags)
    batch_size: int = dataclasses.field(init=False, default=0)
    """num_envs * num_steps * processes, environment steps per update"""
    num_updates: int = dataclasses.field(init=False, default=0)
    """total_timesteps // batch_size"""


# 3. Networks
def layer(module: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(module.weight, gain)
    nn.init.zeros_(module.bias)
    return module


def mlp(in_dim: int, out_dim: int | None, hidden: int, lstm_size: int = 0) -> nn.Sequential:
    """Two tanh hidden layers; with out_dim, a final linear layer (initialised by the caller's head), whose input
    is lstm_size wide where an LSTM sits between it and the hidden layers (--recurrent), else hidden."""
    layers = [layer(nn.Linear(in_dim, hidden), np.sqrt(2)), nn.Tanh(), layer(nn.Linear(hidden, hidden), np.sqrt(2))]
    layers.append(nn.Tanh())
    if out_dim is None:
        return nn.Sequential(*layers)
    return nn.Sequential(*layers, nn.Linear(lstm_size or hidden, out_dim))


class LSTMs(nn.Module):
    """M LSTMs of one size, stepped side by side (the actor's and the critic's, or one after a shared trunk), each

        i, f, g, o = split(x W_ih + h W_hh + b),   c' = sigmoid(f) c + sigmoid(i) tanh(g),   h' = sigmoid(o) tanh(c')

    (the gates of torch.nn.LSTMCell, in its order), with orthogonal weights and zero biases as the other layers."""

    def __init__(self, copies: int, in_dim: int, size: int):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(copies, in_dim, 4 * size))
        self.weight_hh = nn.Parameter(torch.empty(copies, size, 4 * size))
        self.bias = nn.Parameter(torch.zeros(copies, 1, 4 * size))
        for m in range(copies):
            nn.init.orthogonal_(self.weight_ih.data[m])
            nn.init.orthogonal_(self.weight_hh.data[m])

    def forward(self, inputs: torch.Tensor, state: tuple, starts: torch.Tensor | None) -> tuple:
        """inputs (M, T * N, F), row t * N + i being step t of environment i; state (h, c), each (M, N, size), the
        memory before step 0; starts (T * N,) bool, True where an episode begins (None: nowhere). Returns (h at every
        step (M, T * N, size), the memory after the last step). Where an episode begins, h and c are multiplied by
        0 first: neither memory nor gradient crosses the boundary (truncated backpropagation through time: nothing
        flows back past the rollout's first step either)."""
        h, c = state
        num_envs = h.shape[1]
        projected = torch.baddbmm(self.bias, inputs, self.weight_ih)  # x W_ih + b for every step at once
        keep = torch.ones(inputs.shape[1], device=h.device) if starts is None else (~starts).to(h.dtype)
        outputs = []
        for t, keep_t in enumerate(keep.view(-1, 1, num_envs, 1)):
            h, c = h * keep_t, c * keep_t
            gates = projected[:, t * num_envs : (t + 1) * num_envs] + torch.bmm(h, self.weight_hh)
            i, f, g, o = gates.chunk(4, -1)
            c = f.sigmoid() * c + i.sigmoid() * g.tanh()
            h = o.sigmoid() * c.tanh()
            outputs.append(h)
        return torch.cat(outputs, 1), (h, c)


def make_agent(args, obs_space: gym.Space, action_space: gym.Space) -> "ActorCritic":
    """The actor-critic of a run's flags (--recurrent: LSTMs of --lstm-size units), for training and --evaluate."""
    lstm_size = args.lstm_size if args.recurrent else 0
    return ActorCritic(obs_space.shape, action_space, args.hidden_size, args.shared, lstm_size)


class ActorCritic(nn.Module):
    """Images: the Nature CNN trunk with an actor and a critic head. Vector observations: two MLPs, or one
    shared MLP trunk with two heads (--shared). With lstm_size (--recurrent), an LSTM before the heads: one
    after the shared trunk, or one in each MLP before its last layer (the two share nothing, as without it).
    Discrete: categorical logits; Box: Gaussian mean and a state-independent log std."""

    def __init__(self, obs_shape: tuple, action_space: gym.Space, hidden: int, shared: bool, lstm_size: int = 0):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        n_out = action_space.n if self.discrete else action_space.shape[0]
        self.scale = 1 / 255 if len(obs_shape) == 3 else 1.0
        if len(obs_shape) == 3:  # (frames, 84, 84) -> 512 features
            layers = []
            for c_in, c_out, k, stride in [(obs_shape[0], 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)]:  # 84, 20, 9, 7
                layers += [layer(nn.Conv2d(c_in, c_out, k, stride=stride), np.sqrt(2)), nn.ReLU()]
            self.trunk = nn.Sequential(*layers, nn.Flatten(), layer(nn.Linear(64 * 7 * 7, 512), np.sqrt(2)), nn.ReLU())
            features = 512
        elif shared:
            self.trunk, features = mlp(obs_shape[0], None, hidden), hidden
        else:  # no shared features: each MLP's last layer is its head
            self.trunk, features = nn.Identity(), None
            self.actor = mlp(obs_shape[0], n_out, hidden, lstm_size)
            self.critic = mlp(obs_shape[0], 1, hidden, lstm_size)
        if features is not None:
            self.actor, self.critic = nn.Linear(lstm_size or features, n_out), nn.Linear(lstm_size or features, 1)
        layer(self.actor[-1] if isinstance(self.actor, nn.Sequential) else self.actor, 0.01)  # near-uniform start
        layer(self.critic[-1] if isinstance(self.critic, nn.Sequential) else self.critic, 1.0)
        self.log_std = None if self.discrete else nn.Parameter(torch.zeros(n_out))
        self.lstm = None  # --recurrent: one LSTM after the trunk, or the actor's and the critic's side by side
        self.shared_memory = features is not None
        if lstm_size:
            self.lstm = LSTMs(1 if features else 2, features or hidden, lstm_size)

    def forward(self, obs: torch.Tensor, state: tuple | None = None, starts: torch.Tensor | None = None) -> tuple:
        """obs (B, *obs_shape) -> (logits or mean (B, A), value (B,), state). Without an LSTM, state is None and
        stays None. With M LSTMs (1 or 2), the batch is T steps of N environments, obs[t * N + i] being step t of
        environment i (a rollout flattened; T = 1 when acting); state = (h, c), each (M, N, lstm_size), is the
        memory before step 0, and the memory after step T - 1 is returned; starts (B,) bool marks the steps that
        begin an episode, before which the memory is zeroed (None: no episode begins)."""
        x = self.trunk(obs.float() * self.scale)
        if self.lstm is None:
            return self.actor(x), self.critic(x).squeeze(-1), None
        if self.shared_memory:  # one memory after the trunk, read by both heads
            h, state = self.lstm(x[None], state, starts)
            return self.actor(h[0]), self.critic(h[0]).squeeze(-1), state
        h, state = self.lstm(torch.stack([self.actor[:-1](x), self.critic[:-1](x)]), state, starts)
        return self.actor[-1](h[0]), self.critic[-1](h[1]).squeeze(-1), state

    def initial_state(self, num_envs: int, device) -> tuple | None:
        """The memory before the first step: (h, c) of zeros, each (M, num_envs, lstm_size); None without LSTMs."""
        if self.lstm is None:
            return None
        copies, size = self.lstm.weight_hh.shape[:2]
        return torch.zeros(copies, num_envs, size, device=device), torch.zeros(copies, num_envs, size, device=device)

    def sample(self, out: torch.Tensor) -> torch.Tensor:
        if self.discrete:  # Gumbel-max: argmax(logits + Gumbel noise) ~ softmax(logits)
            return (out - torch.empty_like(out).exponential_().log()).argmax(-1)
        return out + self.log_std.exp() * torch.randn_like(out)

    def mode(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(-1) if self.discrete else out

    def log_prob_entropy(self, out: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.discrete:
            return categorical_log_prob(out, actions), categorical_entropy(out)
        return gaussian_log_prob(out, self.log_std, actions), gaussian_entropy(self.log_std).expand(out.shape[:-1])


# 4. Targets and losses
def next_state_values(values, last_value, terminations, truncations, final_values) -> torch.Tensor:
    """The value of what follows each step: V(s_{t+1}) inside an episode (values[t+1], or last_value = V(s_T)
    after the rollout's last step), V(true final obs) at a truncation, 0 at a termination.
    values, terminations, truncations, final_values: (T, N); last_value: (N,). Returns (T, N)."""
    following = torch.cat([values[1:], last_value.unsqueeze(0)])
    return torch.where(terminations, 0.0, torch.where(truncations, final_values, following))


def gae(rewards, values, next_values, dones, gamma: float, lam: float) -> torch.Tensor:
    """A_t = delta_t + gamma lam (1 - done_t) A_{t+1}, delta_t = r_t + gamma next_values_t - values_t.
    All (T, N); dones[t] is True where an episode ended at step t (terminated or truncated): the sum never
    reaches into the next episode. Returns the advantages (T, N); the value targets are A + values."""
    advantages = torch.empty_like(rewards)
    deltas = rewards + gamma * next_values - values
    carry = (~dones).to(rewards.dtype) * gamma * lam
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        last = deltas[t] + carry[t] * last
        advantages[t] = last
    return advantages


def a2c_loss(
    agent,
    b_obs,
    b_actions,
    b_advantages,
    b_returns,
    vf_coef: float,
    ent_coef: float,
    norm_adv: bool,
    distributed: bool,
    replay: tuple = (None, None),
) -> tuple[torch.Tensor, ...]:
    """L = -mean(log pi(a|s) A) + vf_coef mean((V(s) - target)^2) - ent_coef mean(H) over a batch: b_obs
    (B, *obs_shape), b_actions (B,) or (B, D), b_advantages and b_returns (B,). With norm_adv the advantages are
    first normalised over the whole batch, that of all processes together under torchrun. --recurrent: the batch
    is the rollout flattened step by step, replayed through the LSTM with replay = (the memory before the rollout,
    b_starts (B,), True where the memory is zeroed), as in ActorCritic.forward. Returns the loss and its three terms
    (policy loss, value loss, mean entropy)."""
    if norm_adv:
        b_advantages = normalize(b_advantages, distributed)
    out, new_values, _ = agent(b_obs, *replay)
    logp, entropy = agent.log_prob_entropy(out, b_actions)
    policy_loss = -(logp * b_advantages).mean()
    value_loss = (new_values - b_returns).pow(2).mean()
    return policy_loss + vf_coef * value_loss - ent_coef * entropy.mean(), policy_loss, value_loss, entropy.mean()


def normalize(x: torch.Tensor, distributed: bool) -> torch.Tensor:
    """x (B,) -> (x - mean) / (std + 1e-8), mean and (unbiased) std over x, or under torchrun over the x of every
    process together (each holds B values): what one process holding the whole batch would compute."""
    if not distributed:
        return (x - x.mean()) / (x.std() + 1e-8)
    total = torch.stack([x.sum(), torch.tensor(float(x.numel()), device=x.device)])
    torch.distributed.all_reduce(total)
    mean = total[0] / total[1]
    squares = (x - mean).pow(2).sum()
    torch.distributed.all_reduce(squares)
    return (x - mean) / ((squares / (total[1] - 1)).sqrt() + 1e-8)


def annealed_lr(anchor: tuple[int, float], update: int, num_updates: int) -> float:
    """--anneal-lr: linear from anchor = (update u0, learning rate lr0) to 0 at num_updates,
    lr0 * (1 - (update - u0) / (num_updates - u0)). A fresh run's anchor is (0, --learning-rate)."""
    u0, lr0 = anchor
    return lr0 * max(0.0, 1 - (update - u0) / max(num_updates - u0, 1))


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
        return evaluate_saved(args, "actor_critic_gae.py", saved_evaluation)
    checkpoint = load_checkpoint(args.resume, "actor_critic_gae.py") if args.resume else None
    args = resume_args(args, checkpoint["args"]) if checkpoint else args  # the run's own flags (resume_args)
    obs_space, action_space = validate(args)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    distributed = world > 1
    num_envs, num_steps = args.num_envs, args.num_steps
    args.batch_size = num_envs * num_steps * world
    args.num_updates = args.total_timesteps // args.batch_size
    if args.num_updates == 0:
        fail("--total-timesteps", f"must be at least --num-envs * --num-steps * processes = {args.batch_size}")
    if rank == 0:
        say_rounded(args.total_timesteps, args.num_updates * args.batch_size, f"updates of {args.batch_size} steps")
    device = setup_torch(args.seed + rank, args.cuda, args.torch_threads, args.torch_deterministic)

    torch.manual_seed(args.seed)  # the same initial networks in every process ...
    agent = make_agent(args, obs_space, action_space).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=args.adam_eps)
    torch.manual_seed(args.seed + rank)  # ... but each process samples its own actions
    if distributed:
        # joined only now, after the optimizer: with torch 2.13 a process group made before torch.optim's first
        # use (it imports torch._dynamo) outlives destroy_process_group, and its gloo threads, still running as
        # Python exits, abort the process when they release a tensor (pytorch issue 190489)
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    modules = {"agent": agent, "optimizer": optimizer}
    # --anneal-lr: the learning rate falls linearly from lr_anchor = (update, rate) to 0 at the end
    state = {"global_step": 0, "update": 0, "lr_anchor": (0, args.learning_rate), "run_dir": None, "episodes": None}
    global_step, start_update, lr_anchor, run_dir, saved_episodes = restore(checkpoint, modules, state, rng=world == 1)
    if checkpoint is not None:
        saved_updates = checkpoint["args"]["num_updates"]
        if args.num_updates != saved_updates:  # a new run length: the schedule continues from where it is, no jump
            lr_anchor = (start_update, annealed_lr(lr_anchor, start_update, saved_updates))
        if rank == 0:
            schedules = "the annealed learning rate falls from its current value to 0 at the new end"
            say_where_resumed(global_step, args.total_timesteps, checkpoint["args"]["total_timesteps"], schedules)
        if world > 1:  # several processes: new random streams (one process continues its own exactly)
            torch.manual_seed(args.seed + rank + global_step)
        del checkpoint
    run_dir = run_dir or new_run_dir(args.env_id, args.exp_name, args.seed)
    writer = open_run(args, run_dir, resumed_at=global_step if args.resume else None) if rank == 0 else None
    # one process on gymnasium's own vector env resumes its episodes where they were (save_episodes); otherwise
    # the environments start new episodes
    saved_episodes = saved_episodes if world == 1 else None
    envs = make_envs(args.env_id, num_envs, args.frame_stack, saved_episodes and saved_episodes["envs"])
    if envs is None:  # the saved environments cannot be unpickled here (another gymnasium, say): new episodes
        print("note: the checkpoint's environments cannot be restored here; the run goes on with new episodes")
        envs, saved_episodes = make_envs(args.env_id, num_envs, args.frame_stack), None
    rollout = make_rollout(num_steps, num_envs, obs_space, action_space, device)
    is_atari = atari_game(args.env_id) is not None
    low, high = (None, None) if agent.discrete else (action_space.low, action_space.high)
    stop = catch_stop_signals()  # finish the update in progress, then checkpoint and exit

    # LOOP
    start_time, start_step, sps = time.time(), global_step, 0
    episodic_returns, episodic_steps, recent_returns = [], [], deque(maxlen=20)
    progress = ProgressReport(args.num_updates * args.batch_size, global_step, args.progress and rank == 0)
    # next_obs begins an episode where next_starts is True; lstm_state is --recurrent's memory (h, c), else None
    next_obs, next_starts, lstm_state, ep_return, ep_length, lives = start_episodes(
        envs, saved_episodes, agent.initial_state(num_envs, device), args.seed + rank * num_envs + global_step, device
    )
    del saved_episodes  # its tensors are replaced at the first step: then nothing refers to the checkpoint's file
    for update in range(start_update, args.num_updates):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = annealed_lr(lr_anchor, update, args.num_updates)
        rollout.final_values.zero_()
        rollout_state = lstm_state  # the memory before the rollout: the update replays it from here
        for t in range(num_steps):
            # ACT: the memory is zeroed where an episode begins (next_starts), then carried to the next step
            with torch.no_grad():
                out, value, lstm_state = agent(next_obs, lstm_state, next_starts)
                action = agent.sample(out)
            rollout.obs[t], rollout.starts[t] = next_obs, next_starts
            rollout.values[t], rollout.actions[t] = value, action
            env_action = action.cpu().numpy()
            if low is not None:
                env_action = np.clip(env_action, low, high)

            # STEP
            next_obs_np, rewards, terminations, truncations, infos = envs.step(env_action)
            next_obs = torch.as_tensor(next_obs_np, device=device)
            global_step += num_envs * world
            dones = terminations | truncations
            next_starts = torch.as_tensor(dones, device=device)  # the env reset inside the step: a new episode

            # RECORD EPISODES: the real, unclipped return of whole episodes (Atari: whole games)
            ep_return += rewards
            ep_length += 1
            for i in np.flatnonzero(dones):
                episodic_returns.append(float(ep_return[i]))
                episodic_steps.append(global_step)
                recent_returns.append(float(ep_return[i]))
                if writer is not None:
                    writer.add_scalar("charts/episodic_return", ep_return[i], global_step)
                    writer.add_scalar("charts/episodic_length", ep_length[i], global_step)
            ep_return[dones], ep_length[dones] = 0.0, 0

            # STORE
            if is_atari:  # a lost life ends the value's horizon, not the game (at game over: the new game's lives)
                terminations = terminations | ((infos["lives"] < lives) & ~dones)
                lives = infos["lives"]
                rewards = np.sign(rewards)
            rollout.rewards[t] = torch.as_tensor(rewards, device=device)
            rollout.terminations[t] = torch.as_tensor(terminations, device=device)
            rollout.truncations[t] = torch.as_tensor(truncations, device=device)
            if truncations.any():  # bootstrap a time limit from the true final observation, with the episode's memory
                final_obs = torch.as_tensor(np.stack(infos["final_obs"][truncations]), device=device)
                truncated = torch.as_tensor(truncations, device=device)
                memory = lstm_state and tuple(s[:, truncated] for s in lstm_state)
                with torch.no_grad():
                    rollout.final_values[t, truncated] = agent(final_obs, memory)[1]

        # LEARN
        with torch.no_grad():
            last_value = agent(next_obs, lstm_state, next_starts)[1]
        terminations, truncations = rollout.terminations, rollout.truncations
        next_values = next_state_values(rollout.values, last_value, terminations, truncations, rollout.final_values)
        dones = terminations | truncations
        advantages = gae(rollout.rewards, rollout.values, next_values, dones, args.gamma, args.gae_lambda)
        b_returns, b_values = (advantages + rollout.values).flatten(), rollout.values.flatten()
        b_obs, b_actions, b_advantages = rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1), advantages.flatten()
        replay = (rollout_state, rollout.starts.flatten())  # --recurrent: the LSTM's first memory, where it is zeroed
        loss, policy_loss, value_loss, entropy = a2c_loss(
            agent,
            b_obs,
            b_actions,
            b_advantages,
            b_returns,
            args.vf_coef,
            args.ent_coef,
            args.norm_adv,
            distributed,
            replay,
        )
        optimizer.zero_grad()
        loss.backward()
        if distributed and all_reduce_mean(agent, stop["signal"] is not None, world):  # the gradients: their mean
            stop["signal"] = stop["signal"] or signal.SIGTERM  # another process was asked to stop: all stop
        grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
        optimizer.step()

        # LOG
        sps = int((global_step - start_step) / (time.time() - start_time))
        if writer is not None:
            explained_variance = 1 - (b_returns - b_values).var() / (b_returns.var() + 1e-8)
            losses = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy, "grad_norm": grad_norm}
            for key, v in (losses | {"explained_variance": explained_variance}).items():
                writer.add_scalar(f"losses/{key}", v.item(), global_step)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
        progress.update(global_step, sps, recent_returns)
        end = args.num_updates * args.batch_size
        if rank == 0 and checkpoint_due(stop, args.checkpoint_every, global_step - args.batch_size, global_step, end):
            state = {"global_step": global_step, "update": update + 1, "lr_anchor": lr_anchor, "run_dir": run_dir}
            state["episodes"] = save_episodes(envs, next_obs, next_starts, lstm_state, ep_return, ep_length, world)
            write_checkpoint(os.path.join(run_dir, "checkpoint.pt"), args, "actor_critic_gae.py", modules, state)
        if stop["signal"] is not None:
            break
    release_stop_signals()
    progress.close()
    envs.close()

    # TEARDOWN
    eval_returns = []
    if writer is not None:
        evaluation = partial(evaluate, agent, args.env_id, args.frame_stack, args.eval_episodes, args.seed + 10_000)
        eval_returns, _, saved = finish_training(
            args, "actor_critic_gae.py", stop, {"agent": agent}, evaluation, writer
        )
        close_run(writer, args.track)
        print_summary(run_dir, global_step, global_step - start_step, time.time() - start_time, recent_returns, saved)
    if distributed:
        dist.destroy_process_group()
    result = {"run_dir": run_dir, "global_step": global_step, "episodic_returns": episodic_returns, "sps": sps}
    result |= {"episodic_steps": episodic_steps, "eval_returns": eval_returns, "signal": stop["signal"]}
    result |= {"interrupted": stop["signal"] is not None}
    result["final_return"] = float(np.mean(recent_returns)) if recent_returns else float("nan")
    return result


# 6. Environment
def atari_game(env_id: str) -> str | None:
    """'ALE/Pong-v5' or 'PongNoFrameskip-v4' -> 'Pong'; None for other ids."""
    match = re.fullmatch(r"ALE/(\w+)-v5|(\w+)NoFrameskip-v4", env_id)
    return None if match is None else match.group(1) or match.group(2)


def make_env(env_id: str, frame_stack: int | None, render_mode: str | None = None) -> gym.Env:
    """One environment with vector observations; with frame_stack k > 1, each observation is the last k of the
    episode concatenated (zeros before its first), so that a feedforward policy sees how things move."""
    env = gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))  # a user's env may take none
    if frame_stack is not None and frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, frame_stack, padding_type="zero")
        env = gym.wrappers.FlattenObservation(env)
    return env


class CartPoleNoVelocityEnv(CartPoleEnv):
    """CartPole-v1 with the cart's velocity and the pole's angular velocity hidden: observations are (cart
    position, pole angle) only, so that no single observation says where things go. A partially observable task:
    a policy must infer the velocities from the past (--recurrent's memory, or --frame-stack)."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        high = self.observation_space.high[[0, 2]]
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return obs[[0, 2]], info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[[0, 2]], reward, terminated, truncated, info


gym.register("CartPoleNoVelocity-v1", entry_point=CartPoleNoVelocityEnv, max_episode_steps=500, reward_threshold=475)


def rom_name(game: str) -> str:
    """ale-py's name for a game's ROM: 'Pong' -> 'pong', 'MsPacman' -> 'ms_pacman'."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower()


def make_envs(env_id: str, num_envs: int, frame_stack=None, pickled: bytes | None = None) -> gym.vector.VectorEnv:
    """N environments stepped together, each reset inside the step that ends its episode, observations stacked by
    frame_stack (None: 4 on Atari, else 1); pickled: those of a checkpoint (save_episodes), as they were, or None
    where they cannot be unpickled."""
    game = atari_game(env_id)
    if game is None:
        make = [partial(make_env, env_id, frame_stack)] * num_envs
        if pickled is not None:
            try:
                make = [lambda env=env: env for env in pickle.loads(pickled)]
            except Exception:  # noqa: BLE001 (a class renamed or moved, another gymnasium: the caller starts anew)
                return None
        return gym.vector.SyncVectorEnv(make, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return ale_py.vector_env.AtariVectorEnv(
        rom_name(game),
        num_envs,
        autoreset_mode="SameStep",
        frameskip=4,  # one agent step = 4 emulator frames, the action repeated
        maxpool=True,  # the max over the last two frames: sprites that flicker stay visible
        noop_max=30,  # up to 30 no-ops at reset, so that episodes start in varied states
        use_fire_reset=True,  # press FIRE at reset in games that wait for it
        img_height=84,
        img_width=84,
        grayscale=True,
        stack_num=frame_stack or 4,  # observation (frame_stack, 84, 84) uint8: the last preprocessed frames
        reward_clipping=False,  # we clip for learning and log the real score
        episodic_life=False,  # an episode is a whole game; the loop makes life loss terminal for learning
        repeat_action_probability=0.25 if env_id.startswith("ALE/") else 0.0,  # v5 sticky actions
        max_num_frames_per_episode=108_000,  # 30 minutes of play, then truncation
    )


# 7. Storage: on-policy, no replay; one rollout of (num_steps, num_envs) tensors, refilled every update
@dataclass
class Rollout:
    obs: torch.Tensor  # (T, N, *obs_shape), uint8 on Atari
    actions: torch.Tensor  # (T, N) Discrete, (T, N, action_dim) Box
    rewards: torch.Tensor  # (T, N), clipped to their sign on Atari
    terminations: torch.Tensor  # (T, N) bool: no value after step t (the MDP ended, or a life was lost)
    truncations: torch.Tensor  # (T, N) bool: a time limit cut the episode after step t
    starts: torch.Tensor  # (T, N) bool: obs[t] is an episode's first (--recurrent's memory is zeroed before it)
    values: torch.Tensor  # (T, N) V(s_t) when acting
    final_values: torch.Tensor  # (T, N) V(true final obs) where truncated, else 0


def make_rollout(num_steps: int, num_envs: int, obs_space: gym.Space, action_space: gym.Space, device) -> Rollout:
    def zeros(*shape, dtype=torch.float32):
        return torch.zeros((num_steps, num_envs, *shape), dtype=dtype, device=device)

    discrete = isinstance(action_space, gym.spaces.Discrete)
    obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
    return Rollout(
        obs=zeros(*obs_space.shape, dtype=obs_dtype),
        actions=zeros(dtype=torch.long) if discrete else zeros(*action_space.shape),
        rewards=zeros(),
        terminations=zeros(dtype=torch.bool),
        truncations=zeros(dtype=torch.bool),
        starts=zeros(dtype=torch.bool),
        values=zeros(),
        final_values=zeros(),
    )


# 8. Plumbing
def supported_env_ids() -> list[str]:
    """The ids a typo is matched against: gymnasium's own families with vector observations (classic control,
    Box2D, MuJoCo), a user's registered ids, and the Atari ids (ALE/Pong-v5, PongNoFrameskip-v4); not toy text
    (discrete observations) or the JAX versions under phys2d/ and tabular/."""
    gym.register_envs(ale_py)
    entry = {k: str(spec.entry_point) for k, spec in gym.registry.items() if spec.namespace is None or atari_game(k)}
    return [k for k, e in entry.items() if atari_game(k) or not re.search("toy_text|ale_py", e)]


def validate(args: Args) -> tuple[gym.Space, gym.Space]:
    """Check every flag before any work; return the single observation and action spaces."""
    sizes = "total_timesteps num_envs num_steps hidden_size lstm_size learning_rate max_grad_norm adam_eps"
    check_ranges(args, positive=sizes, fraction="gamma gae_lambda", non_negative="vf_coef ent_coef")
    check_run_flags(args)
    game = atari_game(args.env_id)
    if args.frame_stack is not None:
        check_ranges(args, positive="frame_stack")
    if game is not None:
        with warnings.catch_warnings():  # ale-py warns before returning None; our one-line error says it all
            warnings.simplefilter("ignore")
            rom = ale_py.roms.get_rom_path(rom_name(game))
        if rom is None:
            fail("--env-id", f"ale-py has no ROM {game!r} for {args.env_id}")
        if args.capture_video:
            fail("--capture-video", "is not supported for Atari ids; record a classic-control run instead")
        envs = make_envs(args.env_id, 1, args.frame_stack)
        spaces = envs.single_observation_space, envs.single_action_space
        envs.close()
        return spaces
    check_env_id(args.env_id, supported_env_ids())
    try:
        env = make_env(args.env_id, args.frame_stack)
    except gym.error.DependencyNotInstalled as e:
        fail("--env-id", f"{args.env_id} cannot be created: {e}")
    except ImportError as e:
        fail("--env-id", f"{args.env_id} cannot be created, a package is missing: {e}")
    box = isinstance(env.action_space, gym.spaces.Box) and len(env.action_space.shape) == 1
    if not (isinstance(env.action_space, gym.spaces.Discrete) or box):
        fail("--env-id", f"{args.env_id} has action space {env.action_space}; valid: Discrete or 1-D Box")
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        fail("--env-id", f"{args.env_id} has observation space {env.observation_space}; valid: 1-D Box or Atari")
    if args.capture_video:
        check_video(lambda: make_env(args.env_id, args.frame_stack, render_mode="rgb_array"))
    env.close()
    return env.observation_space, env.action_space


def evaluate(
    agent: ActorCritic, env_id: str, frame_stack: int | None, episodes: int, seed: int, video_dir=None
) -> tuple:
    """Whole episodes with the policy's deterministic action (argmax or mean), --recurrent's memory carried from
    step to step and zeroed at each episode's start; returns their real returns.
    Atari: after a lost life FIRE is pressed in games that wait for it, as at reset; a greedy policy that never
    picks FIRE would otherwise stand still until the time limit (training leaves it to the sampled actions).
    Returns (returns, None): no success to report."""
    device = next(agent.parameters()).device
    if video_dir:
        env = make_env(env_id, frame_stack, render_mode="rgb_array")
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)
        envs = gym.vector.SyncVectorEnv([lambda: env], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    else:
        envs = make_envs(env_id, 1, frame_stack)
    actions = list(envs.ale.get_action_set()) if hasattr(envs, "ale") else []
    fire = actions.index(ale_py.Action.FIRE) if ale_py.Action.FIRE in actions else None
    obs, info = envs.reset(seed=seed)
    returns, total, press_fire = [], 0.0, False
    lstm_state, starts = agent.initial_state(1, device), torch.ones(1, dtype=torch.bool, device=device)
    while len(returns) < episodes:
        with torch.no_grad():
            out, _, lstm_state = agent(torch.as_tensor(obs, device=device), lstm_state, starts)
            action = agent.mode(out).cpu().numpy()
        if not agent.discrete:
            action = np.clip(action, envs.single_action_space.low, envs.single_action_space.high)
        if press_fire:
            action[:] = fire
        lives = info.get("lives")
        obs, reward, terminated, truncated, info = envs.step(action)
        total += float(reward[0])
        starts = torch.as_tensor(terminated | truncated, device=device)
        if terminated[0] or truncated[0]:
            returns.append(total)
            total = 0.0
        press_fire = fire is not None and info["lives"][0] < lives[0] and not (terminated[0] or truncated[0])
    envs.close()
    return returns, None


def saved_evaluation(args: Args, saved: dict, device):
    """--evaluate: the saved policy, for evaluate_saved; deterministic actions."""
    obs_space, action_space = validate(args)
    agent = make_agent(args, obs_space, action_space).to(device)
    agent.load_state_dict(saved["agent"])
    return partial(evaluate, agent, args.env_id, args.frame_stack, args.eval_episodes, args.seed + 10_000)


def start_episodes(envs, episodes: dict | None, initial_state, seed: int, device) -> tuple:
    """The loop's (next_obs, next_starts, lstm_state, ep_return, ep_length, lives) before its first step: new
    episodes from envs.reset(seed=seed) with the initial memory, or a checkpoint's episodes (save_episodes) where
    they were (never Atari's, so no lives)."""
    lives = None
    if episodes is None:
        next_obs, infos = envs.reset(seed=seed)
        n, lives = envs.num_envs, infos.get("lives")
        episodes = {"next_obs": torch.as_tensor(next_obs), "next_starts": torch.ones(n, dtype=torch.bool)}
        episodes |= {"lstm_state": initial_state, "ep_return": np.zeros(n), "ep_length": np.zeros(n, dtype=np.int64)}
    lstm_state = episodes["lstm_state"] and tuple(s.to(device) for s in episodes["lstm_state"])
    next_obs, next_starts = episodes["next_obs"].to(device), episodes["next_starts"].to(device)
    return next_obs, next_starts, lstm_state, episodes["ep_return"], episodes["ep_length"], lives


def save_episodes(envs, next_obs, next_starts, lstm_state, ep_return, ep_length, world: int) -> dict | None:
    """For the checkpoint, the episodes in progress, so that a resumed run continues them exactly as if it had
    never stopped: gymnasium's environments pickled (their state and random streams), the observations, the
    memory and the returns so far. None, and a resumed run starts new episodes, under torchrun (the checkpoint
    is one process's) and for ale-py's vector env or an environment that cannot be pickled."""
    if world > 1 or not isinstance(envs, gym.vector.SyncVectorEnv):
        return None
    try:
        pickled = pickle.dumps(envs.envs)
    except Exception:  # noqa: BLE001 (a user's environment holding a lock, a file, a simulator handle...)
        return None
    lstm_state = lstm_state and tuple(s.cpu() for s in lstm_state)
    episodes = {"envs": pickled, "next_obs": next_obs.cpu(), "next_starts": next_starts.cpu()}
    return episodes | {"lstm_state": lstm_state, "ep_return": ep_return.copy(), "ep_length": ep_length.copy()}


def all_reduce_mean(agent: nn.Module, stopping: bool, world: int) -> bool:
    """torchrun: each gradient of agent becomes its mean over the processes, in one all_reduce that also sums
    their stop flags; returns whether any process was asked to stop."""
    import torch.distributed as dist

    grads = [p.grad for p in agent.parameters()]
    flat = torch.cat([g.flatten() for g in grads] + [torch.tensor([float(stopping)], device=grads[0].device)])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g) / world)
        offset += g.numel()
    return bool(flat[-1] > 0)


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
