"""reinforce.py: the maths against brute force, the baseline's effect on the gradient, and learning."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import CLOCK_LIMIT, scalars

import reinforce as R


def brute_force_returns(rewards, ends, next_values, gamma):
    """Walk forward from every (t, n) to the end of its episode segment: sum gamma^k r, then the bootstrap."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, discount = 0.0, 1.0
            for k in range(t, T):
                total += discount * rewards[k, n]
                if ends[k, n]:
                    total += discount * gamma * next_values[k, n]
                    break
                discount *= gamma
            out[t, n] = total
    return out


def make_batch(T=12, N=3, seed=0):
    """A (T, N) batch with terminations, truncations (distinct final values) and a rollout end in each column."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, N))
    terminated = np.zeros((T, N), bool)
    truncated = np.zeros((T, N), bool)
    terminated[[2, 7], 0] = True
    truncated[4, 1] = True
    terminated[9, 1] = True
    truncated[[0, 1, 5], 2] = True
    next_values = np.where(truncated, rng.normal(size=(T, N)) * 10, 0.0)
    next_values[-1] = np.where(terminated[-1], 0.0, rng.normal(size=N) * 10)  # V(s_T) for running episodes
    ends = terminated | truncated
    ends[-1] = True
    return rewards, ends, next_values


@pytest.mark.parametrize("gamma", [0.0, 0.9, 0.99, 1.0])
def test_discounted_returns_match_brute_force(gamma):
    rewards, ends, next_values = make_batch()
    t = lambda x: torch.as_tensor(x, dtype=torch.float32 if x.dtype != bool else torch.bool)
    got = R.discounted_returns(t(rewards), t(ends), t(next_values), gamma).numpy()
    np.testing.assert_allclose(got, brute_force_returns(rewards, ends, next_values, gamma), rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_and_termination_does_not():
    rewards = torch.ones(3, 2)
    ends = torch.tensor([[False, False], [True, True], [True, True]])
    next_values = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0]])  # env 0 truncated at t=1 with V=10, env 1 ended
    G = R.discounted_returns(rewards, ends, next_values, 0.5)
    assert G[1].tolist() == [1 + 0.5 * 10, 1.0]
    assert G[0].tolist() == [1 + 0.5 * (1 + 5), 1 + 0.5 * 1]
    assert G[2].tolist() == [1.0, 1.0]  # a new episode starts after the boundary: nothing leaks back


def test_from_episode_start_matches_brute_force():
    rewards, ends, _ = make_batch()
    got = R.from_episode_start(torch.as_tensor(rewards), torch.as_tensor(ends)).numpy()
    T, N = rewards.shape
    for n in range(N):
        for t in range(T):
            start = t
            while start > 0 and not ends[start - 1, n]:
                start -= 1
            assert got[t, n] == rewards[start, n]


@pytest.mark.parametrize("env_id", ["ClockTruncated-v0", "ClockEndsAtLimit-v0"])
def test_loop_bootstraps_a_time_limit_from_the_true_final_observation_and_a_termination_never(
    env_id, in_tmp, monkeypatch
):
    """The real loop on Clock (tests/conftest.py): every 5th step ends an episode whose true final observation is
    [5], while the environment hands back the next episode's [0] in its place. A time limit completes the return
    with V([5]) of the script's own value network; a termination on the limit (both flags set) with nothing; a
    rollout's end with V of the clock's reading there. Any other step is not an end."""
    value_nets, seen = [], []
    real_mlp, real_returns = R.mlp, R.discounted_returns

    def recording_mlp(in_dim, out_dim, hidden, out_gain):
        net = real_mlp(in_dim, out_dim, hidden, out_gain)
        if out_dim == 1:
            value_nets.append(net)
        return net

    def spy(rewards, ends, next_values, gamma):
        with torch.no_grad():  # the value network as it was while acting: it is updated only after this call
            v = value_nets[0](torch.arange(CLOCK_LIMIT + 1, dtype=torch.float32)[:, None]).squeeze(-1)
        seen.append((ends.clone(), next_values.clone(), v))
        return real_returns(rewards, ends, next_values, gamma)

    monkeypatch.setattr(R, "mlp", recording_mlp)
    monkeypatch.setattr(R, "discounted_returns", spy)
    T, N = 8, 2
    result = R.main(
        R.Args(
            env_id=env_id,
            num_envs=N,
            num_steps=T,
            total_timesteps=3 * T * N,
            progress=False,
            cuda=False,
            eval_episodes=0,
        )
    )
    assert len(seen) == 3
    assert result["episodic_returns"] == [float(CLOCK_LIMIT)] * (3 * T // CLOCK_LIMIT * N)  # reward 1 a step
    terminates = env_id == "ClockEndsAtLimit-v0"
    for update, (ends, next_values, v) in enumerate(seen):
        for t in range(T):
            clock = (update * T + t + 1) % CLOCK_LIMIT  # the reading after step t; 0: the episode just ended
            if clock == 0:
                want = 0.0 if terminates else v[CLOCK_LIMIT]
            elif t == T - 1:
                want = v[clock]
            else:
                want = 0.0
            assert bool(ends[t].all()) == (clock == 0 or t == T - 1)
            torch.testing.assert_close(next_values[t], torch.full((N,), float(want)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "env_id,flags",
    [
        ("CartPole-v1", {}),
        ("CartPole-v1", {"reward_to_go": False}),
        ("CartPole-v1", {"norm_adv": True, "ent_coef": 0.1}),
        ("CartPole-v1", {"baseline": "none"}),
        ("Pendulum-v1", {"ent_coef": 0.1}),
    ],
)
def test_one_update_hands_adam_the_gradients_of_the_estimator(env_id, flags, in_tmp, monkeypatch):
    """One update of the real loop, its gradients caught as they reach Adam, against the estimator written out
    here from the batch the loop used: the policy's is the gradient of -mean_i[log pi(a_i|s_i) A_i] - ent_coef
    mean_i H_i, with A = G - V(s) (V = 0 without a baseline), taken from the episode's first step without
    reward-to-go and normalised with --norm-adv; the value network's first is that of mean_i (V(s_i) - G_i)^2.
    G is what the script's discounted_returns returned (held to brute force above)."""
    nets, batch, steps = [], {}, []
    real_mlp, real_returns, real_log_prob, real_step = (
        R.mlp,
        R.discounted_returns,
        R.Policy.log_prob_entropy,
        torch.optim.Adam.step,
    )

    def recording_mlp(*args, **kwargs):
        nets.append(real_mlp(*args, **kwargs))
        return nets[-1]

    def returns_spy(rewards, ends, next_values, gamma):
        batch["returns"], batch["ends"] = real_returns(rewards, ends, next_values, gamma), ends.clone()
        return batch["returns"]

    def log_prob_spy(self, obs, actions):
        batch["obs"], batch["actions"] = obs.clone(), actions.clone()
        return real_log_prob(self, obs, actions)

    def step_spy(self, *args, **kwargs):
        grads = [p.grad.clone() for group in self.param_groups for p in group["params"]]
        steps.append((grads, copy.deepcopy(nets) if not steps else None))  # the networks before any step
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(R, "mlp", recording_mlp)
    monkeypatch.setattr(R, "discounted_returns", returns_spy)
    monkeypatch.setattr(R.Policy, "log_prob_entropy", log_prob_spy)
    monkeypatch.setattr(torch.optim.Adam, "step", step_spy)
    args = R.Args(
        env_id=env_id,
        num_envs=2,
        num_steps=64,
        total_timesteps=128,
        vf_iters=2,
        progress=False,
        cuda=False,
        eval_episodes=0,
        **flags,
    )
    R.main(args)
    use_baseline = args.baseline == "value"
    assert len(steps) == 1 + 2 * use_baseline  # one policy step, then vf_iters value steps
    policy_net, value_net = steps[0][1]
    obs, actions, G = batch["obs"], batch["actions"], batch["returns"].double()
    with torch.no_grad():
        V = value_net(obs).squeeze(-1).double().view_as(G) if use_baseline else torch.zeros_like(G)
    A = G - V
    if not args.reward_to_go:
        A = R.from_episode_start(A, batch["ends"])
    A = A.flatten()
    if args.norm_adv:
        A = (A - A.mean()) / (A.std() + 1e-8)
    out = policy_net(obs).double()
    if env_id == "CartPole-v1":
        dist = torch.distributions.Categorical(logits=out)
        params = list(policy_net.parameters())
    else:
        log_std = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # the policy's log std starts at 0
        dist = torch.distributions.Independent(torch.distributions.Normal(out, log_std.exp()), 1)
        params = [log_std, *policy_net.parameters()]  # a module lists its own parameters first
    loss = -(dist.log_prob(actions.double()) * A).mean() - args.ent_coef * dist.entropy().mean()
    for got, want in zip(steps[0][0], torch.autograd.grad(loss, params), strict=True):
        torch.testing.assert_close(got.double(), want.double(), rtol=1e-4, atol=1e-6)
    if use_baseline:
        value_loss = (value_net(obs).squeeze(-1).double() - G.flatten()).pow(2).mean()
        for got, want in zip(steps[1][0], torch.autograd.grad(value_loss, list(value_net.parameters())), strict=True):
            torch.testing.assert_close(got.double(), want.double(), rtol=1e-4, atol=1e-6)


def test_gymnasium_same_step_autoreset_gives_the_true_final_observation():
    """The contract the loop relies on: at a truncation, obs is the next episode's start, final_obs the true end."""
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make("CartPole-v1", max_episode_steps=3)] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    obs, _ = envs.reset(seed=0)
    for _ in range(3):
        obs, _, terminated, truncated, info = envs.step(np.zeros(2, dtype=np.int64))
    assert truncated.all() and not terminated.any()
    final = np.stack(info["final_obs"])
    assert np.abs(obs).max() <= 0.05 < np.abs(final).max()  # reset states are within +-0.05; the real end is not


def test_gaussian_log_prob_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    mean, log_std, actions = torch.randn(5, 3), torch.randn(3), torch.randn(5, 3)
    ref = torch.distributions.Normal(mean, log_std.exp())
    torch.testing.assert_close(R.gaussian_log_prob(mean, log_std, actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(R.gaussian_entropy(log_std), ref.entropy()[0].sum())


def test_categorical_log_prob_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    logits, actions = torch.randn(6, 4) * 3, torch.randint(0, 4, (6,))
    ref = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(R.categorical_log_prob(logits, actions), ref.log_prob(actions))
    torch.testing.assert_close(R.categorical_entropy(logits), ref.entropy())


def test_gaussian_policy_samples_have_the_stated_mean_and_std():
    torch.manual_seed(0)
    policy = R.Policy(3, gym.spaces.Box(-2, 2, (2,)), 16)
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-1.0, 0.5]))
        obs = torch.zeros(20_000, 3)
        samples = policy.sample(obs)
        mean = policy.mode(obs[:1])
    torch.testing.assert_close(samples.mean(0), mean[0], atol=0.05, rtol=0)
    torch.testing.assert_close(
        samples.std(0), torch.tensor([np.exp(-1.0), np.exp(0.5)], dtype=torch.float32), atol=0.03, rtol=0
    )


def test_categorical_policy_samples_follow_the_softmax():
    """Gumbel-max sampling: each action's frequency within 4 standard errors of softmax(logits)."""
    torch.manual_seed(0)
    policy = R.Policy(4, gym.spaces.Discrete(3), 8)
    with torch.no_grad():
        policy.net[-1].weight.zero_()
        policy.net[-1].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
        n = 100_000
        freq = torch.bincount(policy.sample(torch.zeros(n, 4)), minlength=3) / n
    p = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    assert ((freq - p).abs() < 4 * (p * (1 - p) / n).sqrt()).all(), (freq, p)


def collect_episodes(policy, value, episodes, seed):
    """Whole CartPole episodes with the given policy: obs, actions, reward-to-go (bootstrapped at truncation)."""
    env = gym.make("CartPole-v1")
    all_obs, all_actions, all_returns = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        ep_obs, ep_actions, ep_rewards, done = [], [], [], False
        while not done:
            o = torch.as_tensor(obs, dtype=torch.float32)
            with torch.no_grad():
                a = policy.sample(o.unsqueeze(0))[0]
            obs, r, terminated, truncated, _ = env.step(a.item())
            ep_obs.append(o), ep_actions.append(a), ep_rewards.append(r)
            done = terminated or truncated
        ends = torch.zeros(len(ep_rewards), 1, dtype=torch.bool)
        ends[-1] = True
        next_values = torch.zeros(len(ep_rewards), 1)
        if truncated:
            with torch.no_grad():
                next_values[-1] = value(torch.as_tensor(obs, dtype=torch.float32))
        rewards = torch.tensor(ep_rewards, dtype=torch.float32).unsqueeze(1)
        all_returns.append(R.discounted_returns(rewards, ends, next_values, 0.99)[:, 0])
        all_obs += ep_obs
        all_actions += ep_actions
    return torch.stack(all_obs), torch.stack(all_actions), torch.cat(all_returns)


def test_learned_baseline_lowers_gradient_variance_without_moving_its_mean(in_tmp):
    """Per-sample terms of the estimator, grad log pi(a|s) * (G - b), on one fixed batch of a half-trained policy.

    With b = V(s) learned by the script, the total variance must fall while the mean stays where it was:
    the difference of the two means, mean_i[grad log pi(a_i|s_i) V(s_i)], must be no larger than its
    sampling noise (||d||^2 about sum_j SE_j^2). A 'baseline' that depends on the action breaks that, which
    shows the check has the power to fail.
    """
    result = R.main(R.Args(total_timesteps=40_000, save_model=True, eval_episodes=0, progress=False, cuda=False))
    state = torch.load(f"{result['run_dir']}/model.pt", weights_only=False)
    policy = R.Policy(4, gym.spaces.Discrete(2), 64)
    policy.load_state_dict(state["policy"])
    value = R.mlp(4, 1, 64, 1.0)
    value.load_state_dict(state["value"])
    torch.manual_seed(123)
    obs, actions, returns = collect_episodes(policy, value, episodes=40, seed=1000)
    assert len(returns) > 2000

    params = {k: v.detach() for k, v in policy.net.named_parameters()}

    def log_prob(p, o, a):
        logits = torch.func.functional_call(policy.net, p, (o.unsqueeze(0),))
        return R.categorical_log_prob(logits, a.unsqueeze(0))[0]

    grads = torch.func.vmap(torch.func.grad(log_prob), in_dims=(None, 0, 0))(params, obs, actions)
    g = torch.cat([grads[k].flatten(1) for k in params], dim=1).double()  # (n, num_params)
    with torch.no_grad():
        v = value(obs).squeeze(-1).double()
    n, G = len(returns), returns.double()

    no_baseline = g * G[:, None]
    with_baseline = g * (G - v)[:, None]
    ratio = (with_baseline.var(0).sum() / no_baseline.var(0).sum()).item()
    assert ratio < 0.5, f"the baseline kept {ratio:.2f} of the variance"

    def mean_shift_ratio(b):
        """||mean_i g_i b_i||^2 over the sum of its squared standard errors: about 1 when b is a valid baseline."""
        terms = g * b[:, None]
        return (terms.mean(0).pow(2).sum() / (terms.var(0).sum() / n)).item()

    assert mean_shift_ratio(v) < 3.0
    action_dependent = v + 20.0 * (actions.double() - 0.5)  # not a baseline: it depends on a_t
    assert mean_shift_ratio(action_dependent) > 10.0


def test_cartpole_learns_within_a_short_budget(in_tmp):
    result = R.main(R.Args(total_timesteps=100_000, eval_episodes=0, progress=False, cuda=False))
    returns = np.array(result["episodic_returns"])
    rolling = np.convolve(returns, np.ones(20) / 20, mode="valid")
    assert rolling.max() >= 195, f"best 20-episode mean {rolling.max():.1f}"
    assert "losses/explained_variance" in scalars(result["run_dir"])


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0"])
def test_other_action_spaces_train(env_id, in_tmp):
    """Discrete with 3 actions, and 1-D Box (Gaussian policy, actions clipped to the bounds): a short run
    updates the policy, and its losses and returns are finite."""
    args = R.Args(
        env_id=env_id,
        total_timesteps=4096,
        num_envs=2,
        num_steps=1024,
        eval_episodes=1,
        progress=False,
        cuda=False,
        save_model=True,
    )
    result = R.main(args)
    logged = scalars(result["run_dir"])
    assert all(np.isfinite(v) for _, v in logged["losses/policy_loss"] + logged["losses/value_loss"])
    assert np.isfinite(result["eval_returns"]).all() and len(result["episodic_returns"]) >= 1
    state = torch.load(f"{result['run_dir']}/model.pt", weights_only=False)
    torch.manual_seed(args.seed)  # main seeds torch, then builds the policy first: the same initial weights
    fresh = R.Policy(gym.make(env_id).observation_space.shape[0], gym.make(env_id).action_space, 64)
    changed = [not torch.equal(state["policy"][k], v) for k, v in fresh.state_dict().items() if "weight" in k]
    assert any(changed)
