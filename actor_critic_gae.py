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

Autoencoder features (--autoencoder, Atari). Of the four kinds of network deep RL is built from (fully connected,
convolutional, recurrent, autoencoders), an autoencoder's encoder can give the agent its features: here the Nature
CNN trunk, mirrored by a decoder of transposed convolutions, both learning L_AE = mean ||x~ - x||^2 with
x~ = decoder(trunk(x)), x the observation in [0, 1]. offline: before any RL update, on frames of a uniformly random
agent, then frozen: the heads learn on features found without reward (fine-tuned, the trunk would only be a warm
start for plain A2C), and no gradient runs through the CNN. online: L = L_A2C + ae_coef * L_AE on each rollout,
one backward, one optimiser. Papers: Jaderberg et al. 2016, arXiv:1611.05397; Yarats et al. 2019, arXiv:1910.01741.

Episode boundaries. Environments reset inside the step that ends an episode (gymnasium's SAME_STEP
autoreset), so the true last observation of an episode is info["final_obs"]. The advantage recursion stops at
every episode end. It bootstraps at the end of a rollout from V(s_T), at a truncation (time limit) from V of
the true final observation, never at a termination. On Atari a lost life is a termination for learning
(Mnih et al. 2015) but the game goes on, and the return logged is the game's full unclipped score; with
--recurrent the memory goes on through lost lives, zeroed only when a new game starts. A resumed run starts new
episodes.

Sticky actions: ALE/...-v5 ids repeat the last action with probability 0.25 (as v5 defines), NoFrameskip-v4 never.
Atari, --recurrent (partial observability) and torchrun (distributed training) are explained in README.md.

Usage:
    python actor_critic_gae.py                                   # CartPole-v1
    python actor_critic_gae.py --env-id PongNoFrameskip-v4 --num-envs 32 --num-steps 5 --learning-rate 7e-4 \
        --adam-eps 1e-5 --vf-coef 0.5 --ent-coef 0.01 --total-timesteps 10000000 --checkpoint-every 1000000
    python actor_critic_gae.py --env-id CartPoleNoVelocity-v1 --recurrent        # velocities hidden: an LSTM
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
    losses/reconstruction     --autoencoder: L_AE on the rollout (offline: of the frozen autoencoder, only measured)
    images/reconstruction     --autoencoder: 4 frames (left) and their x~ (right), 10 times a run, the last at its end
    eval/episodic_return      return of each evaluation episode of the final policy (deterministic actions)
"""

# 1. Imports
import dataclasses
import importlib
import importlib.util
import os
import random
import re
import signal
import sys
import time
import warnings
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist
import tyro
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
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
    """an LSTM before the heads, its memory carried from step to step (README.md: partial observability)"""
    lstm_size: int = 64
    """units of each LSTM of --recurrent"""
    autoencoder: Literal["none", "offline", "online"] = "none"
    """Atari: the trunk is also an autoencoder's encoder, pretrained on random frames then frozen, or trained online"""
    autoencoder_steps: int = 10_000
    """offline: frames of a random agent to pretrain on, 3 epochs, in each process (not counted in --total-timesteps)"""
    ae_coef: float = 1.0
    """online: weight of the reconstruction loss L_AE"""
    # Derived (not flags)
    batch_size: int = dataclasses.field(init=False, default=0)
    """num_envs * num_steps * processes, environment steps per update"""


# 3. Networks
def layer(module: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(module.weight, gain)
    nn.init.zeros_(module.bias)
    return module


def mlp(in_dim: int, out_dim: int | None, hidden: int, lstm_size: int = 0) -> nn.Sequential:
    """Two tanh hidden layers; with out_dim, a final linear layer (initialised by the caller's head), whose input
    is lstm_size wide where an LSTM sits between it and the hidden layers (--recurrent), else hidden."""
    layers = [layer(nn.Linear(in_dim, hidden), np.sqrt(2)), nn.Tanh(), layer(nn.Linear(hidden, hidden), np.sqrt(2))]
    return nn.Sequential(*layers, nn.Tanh(), *([nn.Linear(lstm_size or hidden, out_dim)] if out_dim else []))


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


class ActorCritic(nn.Module):
    """Images: the Nature CNN trunk with an actor and a critic head. Vector observations: two MLPs, or one
    shared MLP trunk with two heads (--shared). With lstm_size (--recurrent), an LSTM before the heads: one
    after the shared trunk, or one in each MLP before its last layer (the two share nothing, as without it).
    Discrete: categorical logits; Box: Gaussian mean and a state-independent log std. decoder: see reconstruct()."""

    def __init__(self, obs_shape: tuple, action_space, hidden: int, shared: bool, lstm_size: int = 0, decoder=False):
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
            if decoder:  # 512 features -> (frames, 84, 84), linear at the end: x~ is compared with x in [0, 1]
                layers = [layer(nn.Linear(512, 64 * 7 * 7), np.sqrt(2)), nn.ReLU(), nn.Unflatten(1, (64, 7, 7))]
                for c_in, c_out, k, stride in [(64, 64, 3, 1), (64, 32, 4, 2), (32, obs_shape[0], 8, 4)]:  # 9, 20, 84
                    layers += [layer(nn.ConvTranspose2d(c_in, c_out, k, stride=stride), np.sqrt(2)), nn.ReLU()]
                self.decoder = nn.Sequential(*layers[:-1])
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
        self.shared_memory = features is not None  # --recurrent: one LSTM after the trunk, else one in each MLP
        self.lstm = LSTMs(1 if features else 2, features or hidden, lstm_size) if lstm_size else None

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
    agent, b_obs, b_actions, b_advantages, b_returns, vf_coef, ent_coef, norm_adv, distributed, replay=(None, None)
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


def reconstruct(agent, b_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """b_obs (B, C, 84, 84) uint8 -> (L_AE = mean of (x~ - x)^2 over all B C 84 84 values, x~), x = b_obs / 255."""
    x = b_obs.float() * agent.scale
    x_hat = agent.decoder(agent.trunk(x))
    return (x_hat - x).pow(2).mean(), x_hat


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


def annealed_lr(anchor: tuple[int, float], step: int, end: int) -> float:
    """--anneal-lr: linear from anchor = (global_step s0, learning rate lr0) to 0 at global_step end,
    lr0 * (1 - (step - s0) / (end - s0)). A fresh run's anchor is (0, --learning-rate)."""
    s0, lr0 = anchor
    return lr0 * max(0.0, 1 - (step - s0) / max(end - s0, 1))


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
    schedules = "the annealed learning rate falls from its current value to 0 at the new end"
    args, checkpoint = load_run(args, "actor_critic_gae.py", schedules)  # --resume or --evaluate
    obs_space, action_space = validate(args)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    distributed, num_envs, num_steps = world > 1, args.num_envs, args.num_steps
    args.batch_size = num_envs * num_steps * world
    if args.total_timesteps < args.batch_size:
        fail("--total-timesteps", f"must be at least --num-envs * --num-steps * processes = {args.batch_size}")
    if args.norm_adv and args.batch_size == 1:  # the std of one advantage is NaN
        fail("--norm-adv", "normalises over the batch: needs --num-envs * --num-steps of at least 2")
    device = setup_torch(args.seed + rank, args.cuda, args.torch_threads, args.torch_deterministic)

    torch.manual_seed(args.seed)  # the same initial networks in every process ...
    lstm_size, decoder = args.lstm_size if args.recurrent else 0, args.autoencoder != "none"  # LSTMs, a decoder
    agent = ActorCritic(obs_space.shape, action_space, args.hidden_size, args.shared, lstm_size, decoder).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=args.adam_eps)
    torch.manual_seed(args.seed + rank)  # ... but each process samples its own actions
    evaluation = partial(evaluate, agent, args.env_id, args.frame_stack, args.eval_episodes, args.seed + 10_000)
    if args.evaluate:  # no training: the saved network's evaluation episodes, in a new run folder
        agent.load_state_dict(checkpoint["agent"])
        writer = open_run(args)
        eval_returns = finish_run(args, "actor_critic_gae.py", writer, {"signal": None}, {}, evaluation)[0]
        return {"run_dir": writer.log_dir, "global_step": 0, "eval_returns": eval_returns, "signal": None}
    if distributed:
        # joined after the optimizer: with torch 2.13 a group made before torch.optim's first use outlives
        # destroy_process_group, and its gloo threads abort the exiting process (pytorch issue 190489)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    modules = {"agent": agent, "optimizer": optimizer}
    # --anneal-lr: the learning rate falls linearly from lr_from = (global_step, rate) to 0 at the end; a checkpoint
    # holds the step it is at and its rate there, so a resumed run's schedule goes on from there without a jump
    state = {"global_step": 0, "lr_from": (0, args.learning_rate), "run_dir": None}
    state = restore(checkpoint, modules, state, rng=world == 1)  # several processes: new random streams below
    global_step, lr_from = state["global_step"], state["lr_from"]
    # whole updates from the step the run is at (the batch is today's: the processes may not be the saved run's)
    end = global_step + max(args.total_timesteps - global_step, 0) // args.batch_size * args.batch_size
    unit = f"updates of {args.batch_size} steps"
    if rank == 0 and end != args.total_timesteps and global_step < args.total_timesteps:
        print(f"note: --total-timesteps {args.total_timesteps} runs as {end}, a whole number of {unit}")
    args.total_timesteps = end  # what runs, and what its checkpoints say: resuming the last trains nothing
    if checkpoint is not None and world > 1:
        torch.manual_seed(args.seed + rank + global_step)
    writer = open_run(args, state["run_dir"], global_step if args.resume else None) if rank == 0 else None
    run_dir = writer and writer.log_dir
    envs = make_envs(args.env_id, num_envs, args.frame_stack)
    if args.autoencoder == "offline" and checkpoint is None:  # resumed: the checkpoint holds the pretrained trunk
        ae_losses = pretrain_autoencoder(agent, optimizer, envs, args.autoencoder_steps, args.seed + rank, world)
        if rank == 0:
            print(f"autoencoder: L_AE {ae_losses[0]:.5f} -> {ae_losses[-1]:.5f} in {len(ae_losses)} steps")
    if args.autoencoder == "offline":  # from here on only the heads learn
        nn.ModuleList([agent.trunk, agent.decoder]).requires_grad_(False)
    rollout = make_rollout(num_steps, num_envs, obs_space, action_space, device)
    is_atari = atari_game(args.env_id) is not None
    low, high = (None, None) if agent.discrete else (action_space.low, action_space.high)
    stop = catch_stop_signals()  # finish the update in progress, then checkpoint and exit

    # LOOP
    start_time, start_step, sps = time.time(), global_step, 0
    episodic_returns, episodic_steps, recent_returns = [], [], deque(maxlen=20)
    progress = ProgressReport(end, global_step, args.progress and rank == 0)
    next_obs, infos = envs.reset(seed=args.seed + rank * num_envs + global_step)
    next_obs, lives = torch.as_tensor(next_obs, device=device), infos.get("lives")
    next_starts = torch.ones(num_envs, dtype=torch.bool, device=device)  # next_obs begins an episode here
    lstm_state = agent.initial_state(num_envs, device)  # --recurrent's memory (h, c), else None
    ep_return, ep_length = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    while global_step < end:
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = annealed_lr(lr_from, global_step, end)
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
        coefs = (args.vf_coef, args.ent_coef, args.norm_adv, distributed, replay)
        loss, policy_loss, value_loss, entropy = a2c_loss(agent, b_obs, b_actions, b_advantages, b_returns, *coefs)
        if decoder:  # online: L_AE in the same backward, so torchrun averages its gradients with A2C's
            reconstruction, b_decoded = reconstruct(agent, b_obs)  # offline: trunk and decoder frozen, no gradient
            loss = loss + args.ae_coef * reconstruction
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
            losses |= {"reconstruction": reconstruction} if decoder else {}
            if decoder and (global_step - args.batch_size) * 10 // end < global_step * 10 // end:  # each tenth
                images = torch.cat([b_obs[:4, -1] * agent.scale, b_decoded[:4, -1]], 2)  # TensorBoard clips to [0, 1]
                writer.add_image("images/reconstruction", images.flatten(0, 1), global_step, dataformats="HW")
            for key, v in (losses | {"explained_variance": explained_variance}).items():
                writer.add_scalar(f"losses/{key}", v.item(), global_step)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
        progress.update(global_step, sps, recent_returns)
        if rank == 0 and checkpoint_due(stop, args.checkpoint_every, global_step - args.batch_size, global_step, end):
            lr_now = (global_step, annealed_lr(lr_from, global_step, end))
            state = {"global_step": global_step, "lr_from": lr_now, "run_dir": run_dir}
            write_checkpoint(os.path.join(run_dir, "checkpoint.pt"), args, "actor_critic_gae.py", modules, state)
        if stop["signal"] is not None:
            break
    catch_stop_signals(False)
    progress.bar.stop()
    envs.close()

    # TEARDOWN
    eval_returns = []
    if writer is not None:
        summary = (global_step, global_step - start_step, time.time() - start_time, recent_returns, "")
        eval_returns = finish_run(args, "actor_critic_gae.py", writer, stop, {"agent": agent}, evaluation, summary)[0]
    if distributed:
        dist.destroy_process_group()
    result = {"run_dir": run_dir, "global_step": global_step, "episodic_returns": episodic_returns, "sps": sps}
    return result | {"episodic_steps": episodic_steps, "eval_returns": eval_returns, "signal": stop["signal"]}


def pretrain_autoencoder(agent, optimizer, envs, frames: int, seed: int, world: int) -> list:
    """--autoencoder offline: `frames` observations of a uniformly random agent in envs, then 3 epochs of optimiser
    steps on L_AE in batches of 64 (no gradient reaches the heads; torchrun: averaged gradients). Returns each L_AE."""
    data = [torch.as_tensor(envs.reset(seed=seed)[0])]
    while len(data) * envs.num_envs < frames:  # actions drawn by NumPy, seeded with the process's seed
        data.append(torch.as_tensor(envs.step(np.random.randint(envs.single_action_space.n, size=envs.num_envs))[0]))
    data, losses = torch.cat(data)[:frames].to(next(agent.parameters()).device), []
    for batch in torch.cat([torch.randperm(frames) for _ in range(3)]).split(64):
        losses.append(reconstruct(agent, data[batch])[0])
        optimizer.zero_grad()
        losses[-1].backward()
        if world > 1:
            all_reduce_mean(agent, False, world)
        optimizer.step()
    return [loss.item() for loss in losses]


# 6. Environment
def atari_game(env_id: str) -> str | None:
    """'ALE/Pong-v5' or 'PongNoFrameskip-v4' -> 'Pong'; None for other ids."""
    match = re.fullmatch(r"ALE/(\w+)-v5|(\w+)NoFrameskip-v4", env_id)
    return None if match is None else match.group(1) or match.group(2)


def make_env(env_id: str, frame_stack: int | None, render_mode: str | None = None) -> gym.Env:
    """One environment with vector observations; with frame_stack k > 1, each observation is the last k of the
    episode concatenated (zeros before its first), so that a feedforward policy sees how things move."""
    env = gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))  # a user's env may take none
    if isinstance(env.observation_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):  # categories: one-hot
        env = gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.float32)
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


def make_envs(env_id: str, num_envs: int, frame_stack=None) -> gym.vector.VectorEnv:
    """N environments stepped together, each reset inside the step that ends its episode, observations stacked by
    frame_stack (None: 4 on Atari, else 1)."""
    game = atari_game(env_id)
    if game is None:
        make = partial(make_env, env_id, frame_stack)
        return gym.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return ale_py.vector_env.AtariVectorEnv(
        rom_name(game),
        num_envs,
        autoreset_mode="SameStep",
        frameskip=4,  # one agent step = 4 emulator frames, the action repeated
        maxpool=True,  # the max over the last two frames: sprites that flicker stay visible
        noop_max=30,  # up to 30 no-ops at reset, so that episodes start in varied states
        use_fire_reset=True,  # press FIRE at reset in every game whose action set has it
        img_height=84,
        img_width=84,
        grayscale=True,
        stack_num=frame_stack or 4,  # observation (frame_stack, 84, 84) uint8: the last preprocessed frames
        reward_clipping=False,  # we clip for learning and log the real score
        episodic_life=False,  # an episode is a whole game; the loop makes life loss terminal for learning
        repeat_action_probability=0.25 if env_id.startswith("ALE/") else 0.0,  # v5 ids are sticky
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
def validate(args: Args) -> tuple[gym.Space, gym.Space]:
    """Every flag checked before any work; returns the single observation and action spaces."""
    game = atari_game(args.env_id)
    if game is not None:
        with warnings.catch_warnings():  # ale-py warns before returning None; our one-line error says it all
            warnings.simplefilter("ignore")
            if ale_py.roms.get_rom_path(rom_name(game)) is None:
                fail("--env-id", f"ale-py has no ROM {game!r} for {args.env_id}")
        if args.capture_video:
            fail("--capture-video", "is not supported for Atari ids; record a classic-control run instead")
    sizes = "total_timesteps num_envs num_steps hidden_size lstm_size learning_rate max_grad_norm adam_eps"
    sizes += " autoencoder_steps" + (" frame_stack" if args.frame_stack is not None else "")
    make = partial(make_envs, args.env_id, 1) if game else partial(make_env, args.env_id)
    env = check_args(args, partial(make, args.frame_stack), sizes, "gamma gae_lambda", "vf_coef ent_coef ae_coef")
    obs_space = getattr(env, "single_observation_space", env.observation_space)  # Atari: a vector env
    action_space = getattr(env, "single_action_space", env.action_space)
    env.close()
    box = isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
    if not (isinstance(action_space, gym.spaces.Discrete) or box):
        fail("--env-id", f"{args.env_id} has action space {action_space}; valid: Discrete or 1-D Box")
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) in ((1, 3) if game else (1,))):
        fail("--env-id", f"{args.env_id} has observation space {obs_space}; valid: 1-D Box or Atari")
    if args.autoencoder != "none" and len(obs_space.shape) == 1:
        fail("--autoencoder", f"reconstructs image observations; {args.env_id} has vectors: give an Atari id or none")
    return obs_space, action_space


def evaluate(agent: ActorCritic, env_id: str, frame_stack, episodes: int, seed: int, video_dir=None) -> tuple:
    """Whole episodes with the policy's deterministic action (argmax or mean), --recurrent's memory carried from
    step to step and zeroed at each episode's start; returns (their real returns, None: no success to report).
    Atari: after each lost life, as at reset, FIRE is pressed in every game whose action set has it, so that a
    greedy policy that never picks it cannot stand until the time limit in a game that waits for it (training
    leaves it to the sampled actions)."""
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


def all_reduce_mean(agent: nn.Module, stopping: bool, world: int) -> bool:
    """torchrun: each gradient of agent becomes its mean over the processes, in one all_reduce that also sums
    their stop flags; returns whether any process was asked to stop."""
    grads = [p.grad for p in agent.parameters() if p.grad is not None]  # --autoencoder: frozen, or not yet used
    flat = torch.cat([g.flatten() for g in grads] + [torch.tensor([float(stopping)], device=grads[0].device)])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g) / world)
        offset += g.numel()
    return bool(flat[-1] > 0)


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
