"""actor_critic_gae.py: GAE against brute force, bootstrapping at every kind of edge, distributed training,
checkpoints, Atari preprocessing in the loop, and learning."""

import copy
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import CLOCK_LIMIT, ROOT, Clock, scalars

import actor_critic_gae as A


def make_batch(T=10, N=4, seed=0):
    """Rewards and values with terminations, truncations (each with its own final value) and rollout ends."""
    rng = np.random.default_rng(seed)
    terminations = np.zeros((T, N), bool)
    truncations = np.zeros((T, N), bool)
    terminations[[2, 6], 0] = True
    truncations[4, 1] = True
    terminations[8, 1] = True
    truncations[[0, 1, 9], 2] = True  # column 3 never ends: pure rollout-end bootstrapping
    tensors = {
        "rewards": rng.normal(size=(T, N)),
        "values": rng.normal(size=(T, N)),
        "last_value": rng.normal(size=N),
        "final_values": np.where(truncations, rng.normal(size=(T, N)) * 5, 0.0),
        "terminations": terminations,
        "truncations": truncations,
    }
    return {k: torch.as_tensor(v, dtype=torch.bool if v.dtype == bool else torch.float64) for k, v in tensors.items()}


def brute_force(b, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, walking forward until the episode ends or the rollout does."""
    T, N = b["rewards"].shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                if b["terminations"][k, n]:
                    following = 0.0
                elif b["truncations"][k, n]:
                    following = b["final_values"][k, n]
                else:
                    following = b["values"][k + 1, n] if k + 1 < T else b["last_value"][n]
                total += weight * (b["rewards"][k, n] + gamma * following - b["values"][k, n])
                if b["terminations"][k, n] or b["truncations"][k, n]:
                    break
                weight *= gamma * lam
            out[t, n] = total
    return out


def script_gae(b, gamma, lam):
    nv = A.next_state_values(b["values"], b["last_value"], b["terminations"], b["truncations"], b["final_values"])
    dones = b["terminations"] | b["truncations"]
    return A.gae(b["rewards"], b["values"], nv, dones, gamma, lam).numpy()


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0), (0.0, 0.7)])
def test_gae_matches_brute_force(gamma, lam):
    b = make_batch()
    np.testing.assert_allclose(script_gae(b, gamma, lam), brute_force(b, gamma, lam), rtol=1e-10, atol=1e-10)


def test_lambda_one_is_discounted_return_minus_value():
    b, gamma = make_batch(seed=1), 0.97
    T, N = b["rewards"].shape
    returns = np.zeros((T, N))
    for n in range(N):  # discounted sum of rewards to the episode's end, plus the bootstrap there
        for t in range(T):
            total, discount = 0.0, 1.0
            for k in range(t, T):
                total += discount * b["rewards"][k, n]
                discount *= gamma
                if b["terminations"][k, n]:
                    break
                if b["truncations"][k, n]:
                    total += discount * b["final_values"][k, n]
                    break
                if k == T - 1:
                    total += discount * b["last_value"][n]
            returns[t, n] = total
    np.testing.assert_allclose(script_gae(b, gamma, 1.0), returns - b["values"].numpy(), rtol=1e-10, atol=1e-10)


def test_lambda_zero_is_the_td_residual():
    b, gamma = make_batch(seed=2), 0.9
    nv = A.next_state_values(b["values"], b["last_value"], b["terminations"], b["truncations"], b["final_values"])
    np.testing.assert_allclose(script_gae(b, gamma, 0.0), (b["rewards"] + gamma * nv - b["values"]).numpy())


def test_truncation_bootstraps_from_final_value_and_termination_does_not():
    values = torch.tensor([[1.0, 1.0], [7.0, 7.0]])  # values[1] belongs to the next episode's first state
    nv = A.next_state_values(
        values,
        torch.tensor([3.0, 3.0]),
        torch.tensor([[False, True], [False, False]]),
        torch.tensor([[True, False], [False, False]]),
        torch.tensor([[5.0, 0.0], [0.0, 0.0]]),
    )
    assert nv.tolist() == [[5.0, 0.0], [3.0, 3.0]]


def test_loop_bootstraps_truncations_from_the_true_final_observation(in_tmp, monkeypatch):
    """The real loop on Clock (tests/conftest.py): every 5th step is a time limit whose true final observation is
    [5], while the environment hands back the next episode's [0] in its place. Each such step's bootstrap value
    must be V([5]) of the script's own network as it was while acting, and no other step may have one."""
    agents, seen = [], []
    real_agent, real_next_values = A.ActorCritic, A.next_state_values

    class RecordedAgent(real_agent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            agents.append(self)

    def spy(values, last_value, terminations, truncations, final_values):
        with torch.no_grad():  # the network as it was while acting: it is updated only after this call
            v_final = agents[0](torch.tensor([[float(CLOCK_LIMIT)]]))[1][0]
        seen.append((terminations.clone(), truncations.clone(), final_values.clone(), v_final))
        return real_next_values(values, last_value, terminations, truncations, final_values)

    monkeypatch.setattr(A, "ActorCritic", RecordedAgent)
    monkeypatch.setattr(A, "next_state_values", spy)
    T, N = 8, 4
    A.main(
        A.Args(
            env_id="ClockTruncated-v0",
            total_timesteps=4 * T * N,
            num_envs=N,
            num_steps=T,
            cuda=False,
            progress=False,
            eval_episodes=0,
        )
    )
    assert len(seen) == 4
    for update, (terminations, truncations, final_values, v_final) in enumerate(seen):
        for t in range(T):
            truncated = (update * T + t + 1) % CLOCK_LIMIT == 0
            assert truncations[t].tolist() == [truncated] * N and not terminations[t].any()
            want = torch.full((N,), float(v_final) if truncated else 0.0)
            torch.testing.assert_close(final_values[t], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "env_id,flags",
    [
        ("ClockTruncated-v0", {"gamma": 0.9, "gae_lambda": 0.8}),
        ("CartPole-v1", {"norm_adv": True, "ent_coef": 0.1, "vf_coef": 0.5}),
        ("CartPole-v1", {"max_grad_norm": 0.05}),  # clipped: the gradient scaled to this norm
    ],
)
def test_one_update_hands_adam_the_gradients_of_the_a2c_loss(env_id, flags, in_tmp, monkeypatch):
    """One update of the real loop, against the algorithm written out here from what the loop collected: the
    advantages it trains on are brute-force GAE (gamma, lambda, bootstraps and episode ends as collected), the
    value targets are A + V(s), and the gradients that reach Adam are those of -mean(log pi(a|s) A) +
    vf_coef mean((V(s) - (A + V_old(s)))^2) - ent_coef mean(H), A normalised with --norm-adv, scaled down to a
    global norm of --max-grad-norm where theirs is larger (no clipping unless the flags ask for it)."""
    agents, seen, steps = [], {}, []
    real_agent, real_gae, real_next, real_loss, real_step = (
        A.ActorCritic,
        A.gae,
        A.next_state_values,
        A.a2c_loss,
        torch.optim.Adam.step,
    )

    class RecordedAgent(real_agent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            agents.append(self)

    def next_spy(values, last_value, terminations, truncations, final_values):
        seen.update(
            values=values,
            last_value=last_value,
            terminations=terminations,
            truncations=truncations,
            final_values=final_values,
        )
        return real_next(values, last_value, terminations, truncations, final_values)

    def gae_spy(rewards, *args):
        seen["rewards"] = rewards
        return real_gae(rewards, *args)

    def loss_spy(agent, b_obs, b_actions, b_advantages, b_returns, *args):
        seen.update(obs=b_obs, actions=b_actions, advantages=b_advantages, returns=b_returns)
        return real_loss(agent, b_obs, b_actions, b_advantages, b_returns, *args)

    def step_spy(self, *args, **kwargs):
        steps.append(([p.grad.clone() for g in self.param_groups for p in g["params"]], copy.deepcopy(agents[0])))
        return real_step(self, *args, **kwargs)

    for name, spy in [
        ("ActorCritic", RecordedAgent),
        ("gae", gae_spy),
        ("next_state_values", next_spy),
        ("a2c_loss", loss_spy),
    ]:
        monkeypatch.setattr(A, name, spy)
    monkeypatch.setattr(torch.optim.Adam, "step", step_spy)
    args = A.Args(
        env_id=env_id,
        num_envs=4,
        num_steps=16,
        total_timesteps=64,
        cuda=False,
        progress=False,
        eval_episodes=0,
        **({"max_grad_norm": 1e9} | flags),
    )
    A.main(args)
    assert len(steps) == 1
    b = {k: v.double() if v.dtype != torch.bool else v for k, v in seen.items()}
    want = torch.as_tensor(brute_force(b, args.gamma, args.gae_lambda)).flatten()
    torch.testing.assert_close(seen["advantages"].double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen["returns"].double(), want + b["values"].flatten(), rtol=1e-5, atol=1e-5)
    if env_id == "ClockTruncated-v0":
        assert seen["truncations"].any() and not seen["terminations"].any()
    else:
        assert seen["terminations"].any()

    grads, agent = steps[0]
    adv = (want - want.mean()) / (want.std() + 1e-8) if args.norm_adv else want
    logits, values, _ = agent(seen["obs"])
    dist = torch.distributions.Categorical(logits=logits.double())
    loss = (
        -(dist.log_prob(seen["actions"]) * adv).mean()
        + args.vf_coef * (values.double() - seen["returns"].double()).pow(2).mean()
        - args.ent_coef * dist.entropy().mean()
    )
    expected = torch.autograd.grad(loss, list(agent.parameters()))
    norm = torch.cat([g.flatten() for g in expected]).norm()
    assert (norm > args.max_grad_norm) == ("max_grad_norm" in flags)  # the clipping case clips
    scale = min(1.0, args.max_grad_norm / float(norm))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got.double(), want.double() * scale, rtol=1e-4, atol=1e-6)


def test_atari_life_loss_is_terminal_for_learning_but_the_game_goes_on(in_tmp, monkeypatch):
    """Breakout: 5 lives per game. Terminations (for learning) outnumber finished games, which are logged
    with their whole, unclipped score."""
    terminations_seen = []

    def spy(values, last_value, terminations, truncations, final_values):
        terminations_seen.append(terminations.sum().item())
        return real(values, last_value, terminations, truncations, final_values)

    real = A.next_state_values
    monkeypatch.setattr(A, "next_state_values", spy)
    result = A.main(
        A.Args(
            env_id="ALE/Breakout-v5",
            total_timesteps=4 * 128 * 8,
            num_envs=4,
            num_steps=128,
            cuda=False,
            progress=False,
            eval_episodes=1,
        )
    )
    games = len(result["episodic_returns"])
    assert games >= 1 and sum(terminations_seen) >= 4 * games
    logged = scalars(result["run_dir"])
    for key in ["charts/episodic_return", "losses/policy_loss", "losses/value_loss", "eval/episodic_return"]:
        assert key in logged
    assert all(r == int(r) >= 0 for r in result["episodic_returns"])  # whole Breakout scores, not clipped means


def test_checkpoint_then_resume_restores_networks_optimizer_and_step(in_tmp, monkeypatch):
    first = A.main(
        A.Args(
            total_timesteps=4096,
            num_envs=4,
            num_steps=8,
            checkpoint_every=1024,
            cuda=False,
            progress=False,
            eval_episodes=0,
        )
    )
    path = os.path.join(first["run_dir"], "checkpoint.pt")
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["global_step"] == first["global_step"] == 4096
    # resuming with nothing left to do does nothing (test_shared: and leaves the folder as it was)
    monkeypatch.setattr(sys, "argv", ["x.py", "--resume", path, "--save-model"])
    with pytest.raises(SystemExit) as same:
        A.main(A.Args(resume=path, save_model=True, cuda=False, progress=False, eval_episodes=0))
    assert same.value.code == 0 and not os.path.exists(os.path.join(first["run_dir"], "model.pt"))
    # resuming with more steps continues from the step and logs into the same folder
    time.sleep(1)  # TensorBoard reads event files in name order, by the second each was opened: one second apart
    monkeypatch.setattr(sys, "argv", ["x.py", "--resume", path, "--total-timesteps", "8192"])
    more = A.main(A.Args(resume=path, total_timesteps=8192, cuda=False, progress=False, eval_episodes=0))
    assert more["run_dir"] == first["run_dir"] and more["global_step"] == 8192
    assert min(more["episodic_steps"]) > 4096
    steps = [s for s, _ in scalars(first["run_dir"])["charts/SPS"]]
    assert steps[-1] == 8192 and len(steps) == len(set(steps)) == 8192 // 32


def test_checkpoint_holds_the_optimizer_state(in_tmp):
    first = A.main(
        A.Args(
            total_timesteps=2048,
            num_envs=4,
            num_steps=8,
            checkpoint_every=2048,
            cuda=False,
            progress=False,
            eval_episodes=0,
        )
    )
    state = torch.load(os.path.join(first["run_dir"], "checkpoint.pt"), weights_only=False)["optimizer"]["state"]
    assert state and all(s["step"] == 2048 // 32 for s in state.values())


def test_sigterm_writes_a_checkpoint_and_exits_143(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "actor_critic_gae.py"),
            "--total-timesteps",
            "50000000",
            "--no-cuda",
            "--no-progress",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not list(tmp_path.glob("runs/*/events.*")) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out
    (checkpoint,) = tmp_path.glob("runs/*/checkpoint.pt")
    assert f"--resume {checkpoint.relative_to(tmp_path)}" in out
    assert torch.load(checkpoint, weights_only=False)["global_step"] > 0
    assert not list(tmp_path.glob("runs/*/*.tmp"))


def run_ddp_check(out, flags: dict | None = None):
    """tests/ddp_check.py under torchrun with 2 processes, writing into out (flags: overrides of its ARGS)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "tests" / "ddp_check.py"),
        str(out),
        *([json.dumps(flags)] if flags else []),
    ]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory):
    """One run of tests/ddp_check.py under torchrun with 2 processes: its output folder."""
    return run_ddp_check(tmp_path_factory.mktemp("ddp"))


def test_two_processes_under_torchrun_stay_identical_and_log_once(torchrun):
    ranks = [json.loads((torchrun / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["updates"] for r in ranks] == [4096 // (2 * 4 * 8)] * 2
    assert all(r["max_diff"] == 0.0 for r in ranks)
    assert all(r["global_step"] == 4096 for r in ranks)
    # the process group is gone when main returns: gloo threads left running can abort the interpreter's exit
    assert not [t for r in ranks for t in r["threads"] if "gloo" in t], ranks
    (run_dir,) = torchrun.glob("runs/*")  # one run folder, one event file: only rank 0 logs
    assert len(list(run_dir.glob("events.*"))) == 1
    assert len(scalars(str(run_dir))["charts/SPS"]) == 4096 // (2 * 4 * 8)


def test_two_processes_update_as_one_process_on_the_combined_batch(torchrun):
    """The first update of the two-process run, replayed in this one process: the script's own a2c_loss on both
    ranks' batches together (advantages normalised over all of them, --norm-adv), one gradient clip and one Adam
    step from the same parameters. The replicas must land where this single process does: gradients averaged
    over the processes (not summed, not one rank's alone), advantages normalised over the whole batch."""
    ranks = [torch.load(torchrun / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for before, after in zip(ranks[0]["before"], ranks[0]["after"], strict=True):
        assert not torch.equal(before, after)  # the update moved every parameter
    args = A.Args(**ranks[0]["args"])
    obs_space, action_space = gym.make(args.env_id).observation_space, gym.make(args.env_id).action_space
    agent = A.ActorCritic(obs_space.shape, action_space, args.hidden_size, args.shared)
    with torch.no_grad():
        for p, before in zip(agent.parameters(), ranks[0]["before"], strict=True):
            p.copy_(before)
    batch = [torch.cat([r["batch"][i] for r in ranks]) for i in range(4)]  # obs, actions, advantages, returns
    loss = A.a2c_loss(agent, *batch, args.vf_coef, args.ent_coef, args.norm_adv, False)[0]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
    torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=args.adam_eps).step()
    for p, before, after in zip(agent.parameters(), ranks[0]["before"], ranks[0]["after"], strict=True):
        torch.testing.assert_close(p.detach() - before, after - before, rtol=1e-3, atol=1e-7)


def test_a_run_resumed_under_another_number_of_processes_counts_its_steps(torchrun, in_tmp, monkeypatch):
    """The batch of an update is today's processes' (num_envs * num_steps * processes): a run stopped under 2
    torchrun processes at 4096 and resumed as 1 with --total-timesteps 8192 takes 4096 / 32 updates and ends at
    8192; one stopped as 1 process at 2080 (65 updates of 32) and resumed under 2 takes the 31 whole updates of
    64 that fit, ending at 4064, neither past 4096 nor short of the updates it has room for."""
    (run,) = torchrun.glob("runs/*")
    shutil.copytree(run, in_tmp / "runs" / run.name)  # a copy: the torchrun tests read that folder
    path = f"runs/{run.name}/checkpoint.pt"
    assert torch.load(path, weights_only=False)["global_step"] == 4096
    steps, real_step = [], torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1) or real_step(self, *a, **k))
    monkeypatch.setattr(sys, "argv", ["x.py", "--resume", path, "--total-timesteps", "8192"])
    one = A.main(A.Args(resume=path, total_timesteps=8192, cuda=False, progress=False, eval_episodes=0))
    assert one["global_step"] == 8192 and len(steps) == 4096 // 32

    flags = {"num_envs": 4, "num_steps": 8, "cuda": False, "progress": False, "eval_episodes": 0}
    single = A.main(A.Args(total_timesteps=2080, checkpoint_every=2080, **flags))
    resume = {"resume": str(in_tmp / single["run_dir"] / "checkpoint.pt"), "total_timesteps": 4096}
    (in_tmp / "two").mkdir()
    out = run_ddp_check(in_tmp / "two", resume)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["updates"], r["global_step"]) for r in ranks] == [(31, 2080 + 31 * 64)] * 2
    assert all(r["max_diff"] == 0.0 for r in ranks)


def test_cartpole_learns_within_a_short_budget(in_tmp):
    result = A.main(A.Args(total_timesteps=150_000, eval_episodes=0, progress=False, cuda=False))
    returns = np.array(result["episodic_returns"])
    rolling = np.convolve(returns, np.ones(20) / 20, mode="valid")
    assert rolling.max() >= 475, f"best 20-episode mean {rolling.max():.1f}"


@pytest.mark.parametrize("env_id", ["Pendulum-v1"])
def test_box_actions_train(env_id, in_tmp):
    result = A.main(
        A.Args(
            env_id=env_id, total_timesteps=4096, num_envs=4, cuda=False, progress=False, eval_episodes=1, shared=True
        )
    )
    logged = scalars(result["run_dir"])
    assert all(np.isfinite(v) for _, v in logged["losses/policy_loss"] + logged["losses/value_loss"])
    assert len(result["eval_returns"]) == 1 and np.isfinite(result["eval_returns"][0])


def test_greedy_evaluation_presses_fire_after_a_lost_life():
    """Breakout waits for FIRE after every lost life. A greedy policy that only ever picks NOOP must still lose
    its 5 lives and end the game within a few hundred steps in evaluation, not stand until the time limit
    (27,000 agent steps)."""
    agent = A.ActorCritic((4, 84, 84), gym.spaces.Discrete(4), 64, shared=True)
    with torch.no_grad():
        agent.actor.weight.zero_()
        agent.actor.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # argmax: NOOP, always
    calls = []

    def count(*_):
        calls.append(1)
        assert len(calls) < 2000, "the game did not end: nothing pressed FIRE after a lost life"

    agent.register_forward_hook(count)
    returns, _ = A.evaluate(agent, "BreakoutNoFrameskip-v4", None, 1, seed=0)
    assert len(returns) == 1 and len(calls) < 1000


# Partial observability: --recurrent (LSTMs before the heads) and --frame-stack.
class CueMemory(gym.Env):
    """A memory task whose answer no single observation holds: a cue, one of two, shown at the first step only
    ([1, 0, 0] or [0, 1, 0]), blanks ([0, 0, 0]), then at step CUE_DELAY a query ([0, 0, 1]), where the action
    scores +1 if it names the cue and -1 if not, and the episode ends; no other action scores. A feedforward
    policy sees the same query whatever the cue: its best mean return is 0 (chance). With memory it is 1."""

    observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        return np.eye(3, dtype=np.float32)[self.cue], {}

    def step(self, action):
        self.t += 1
        if self.t <= CUE_DELAY - 1:  # blanks, then the query
            return np.eye(3, dtype=np.float32)[2] * (self.t == CUE_DELAY - 1), 0.0, False, False, {}
        return np.zeros(3, np.float32), 1.0 if int(action) == self.cue else -1.0, True, False, {}


CUE_DELAY = 4  # steps from the cue to the query: episodes of 4 steps, two to a rollout of --num-steps 8
if "CueMemory-v0" not in gym.registry:
    gym.register("CueMemory-v0", entry_point=CueMemory)


def test_a_recurrent_policy_remembers_the_cue_and_a_feedforward_one_cannot(in_tmp):
    """The same budget and flags on CueMemory-v0: with --recurrent the greedy evaluation (its own memory carried
    from step to step), in training and from the saved model.pt (--evaluate), names the cue every time; the
    feedforward policy stays at chance."""
    flags = {"env_id": "CueMemory-v0", "total_timesteps": 30_000, "cuda": False, "progress": False}
    flags |= {"eval_episodes": 100, "lstm_size": 32, "hidden_size": 32, "save_model": True}
    recurrent = A.main(A.Args(recurrent=True, **flags))
    feedforward = A.main(A.Args(recurrent=False, **flags))
    assert np.mean(recurrent["eval_returns"]) == 1.0, np.mean(recurrent["eval_returns"])
    assert abs(np.mean(feedforward["eval_returns"])) <= 0.3, np.mean(feedforward["eval_returns"])
    saved = os.path.join(recurrent["run_dir"], "model.pt")
    again = A.main(A.Args(evaluate=saved, eval_episodes=20, cuda=False, progress=False))
    assert np.mean(again["eval_returns"]) == 1.0


@pytest.mark.parametrize("shared", [True, False])
def test_the_memory_is_zeroed_where_an_episode_starts_and_no_gradient_crosses_it(shared):
    """ActorCritic.forward on a flattened rollout (T steps of N environments, episodes starting at various steps),
    against a step-by-step replay of each environment alone through the critic's own layers (after the shared
    trunk, or inside the critic's MLP) and torch's own nn.LSTMCell holding the weights of the critic's LSTM: the
    same values and the same final memory; and each value's gradient reaches exactly the observations of its own
    episode up to its step, and the memory before the rollout only while no episode has started since."""
    torch.manual_seed(0)
    T, N, H = 7, 4, 8
    agent = A.ActorCritic((3,), gym.spaces.Discrete(2), 16, shared=shared, lstm_size=H)
    m = 0 if shared else 1  # the critic's memory
    features, head = (agent.trunk, agent.critic) if shared else (agent.critic[:-1], agent.critic[-1])
    cell = torch.nn.LSTMCell(16, H)
    with torch.no_grad():
        cell.weight_ih.copy_(agent.lstm.weight_ih[m].T)
        cell.weight_hh.copy_(agent.lstm.weight_hh[m].T)
        cell.bias_ih.copy_(agent.lstm.bias[m, 0])
        cell.bias_hh.zero_()
    obs = torch.randn(T, N, 3, requires_grad=True)
    starts = torch.zeros(T, N, dtype=torch.bool)
    starts[2, 0] = starts[5, 0] = starts[0, 1] = starts[6, 2] = True  # environment 3 never starts one
    M = 1 if shared else 2
    state = (torch.randn(M, N, H, requires_grad=True), torch.randn(M, N, H, requires_grad=True))
    _, values, (h, c) = agent(obs.flatten(0, 1), state, starts.flatten())
    values = values.view(T, N)
    for i in range(N):
        hi, ci = state[0][m, i : i + 1], state[1][m, i : i + 1]
        begun = 0  # the step this environment's current episode began at (0: before the rollout)
        for t in range(T):
            if starts[t, i]:
                hi, ci, begun = torch.zeros(1, H), torch.zeros(1, H), t
            hi, ci = cell(features(obs[t, i : i + 1]), (hi, ci))
            torch.testing.assert_close(values[t, i], head(hi)[0, 0])
            d_obs, d_h, d_c = torch.autograd.grad(values[t, i], [obs, *state], retain_graph=True)
            reached = d_obs.abs().sum(-1) > 0
            want = torch.zeros(T, N, dtype=torch.bool)
            want[begun : t + 1, i] = True
            assert torch.equal(reached, want), (t, i, reached.int())
            from_before = bool(d_h.abs().sum() + d_c.abs().sum() > 0)
            assert from_before == (not starts[: t + 1, i].any()), (t, i)
            assert not d_h[:, torch.arange(N) != i].any()
        torch.testing.assert_close((h[m, i], c[m, i]), (hi[0], ci[0]))


class ClockRandomEnd(Clock):
    """Clock (obs [t]) whose episode terminates at a step drawn at reset from 3 to 7; with the time limit of 5, an
    episode terminates (3, 4), does both (5) or is truncated (6, 7), each environment at its own steps."""

    def reset(self, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self.end_at = int(self.np_random.integers(3, 8))
        return obs, info


if "ClockRandomEnd-v0" not in gym.registry:
    gym.register("ClockRandomEnd-v0", entry_point=ClockRandomEnd, max_episode_steps=CLOCK_LIMIT)


def recurrent_run(monkeypatch, **flags) -> dict:
    """A few updates of the real loop with --recurrent on ClockRandomEnd-v0 (obs [t]; episodes of 3 to 5 steps,
    ending at different steps in each environment and straddling the rollouts of 8 steps), recording what the
    loop acted on and what it handed to a2c_loss."""
    seen = {"acting": [], "values": [], "losses": [], "final": []}
    real_sample, real_next, real_loss = A.ActorCritic.sample, A.next_state_values, A.a2c_loss

    def sample_spy(self, out):
        seen["acting"].append(out.clone())
        seen["agent"] = self
        return real_sample(self, out)

    def next_spy(values, last_value, terminations, truncations, final_values):
        seen["values"].append(values.clone())
        with (
            torch.no_grad()
        ):  # V([5]) after a whole episode [0], ..., [4] from a zeroed memory, the network as it acted
            agent = seen["agent"]
            v_final = agent(torch.arange(6.0).view(6, 1), agent.initial_state(1, "cpu"))[1][-1]
        seen["final"].append((truncations.clone(), final_values.clone(), v_final))
        return real_next(values, last_value, terminations, truncations, final_values)

    def loss_spy(agent, b_obs, b_actions, b_advantages, b_returns, *args):
        replay = args[-1]
        with torch.no_grad():  # the network as it acted: the optimiser steps after this call
            out, values, _ = agent(b_obs, *replay)
        seen["losses"].append({"obs": b_obs.clone(), "starts": replay[1].clone(), "out": out, "values": values})
        return real_loss(agent, b_obs, b_actions, b_advantages, b_returns, *args)

    monkeypatch.setattr(A.ActorCritic, "sample", sample_spy)
    monkeypatch.setattr(A, "next_state_values", next_spy)
    monkeypatch.setattr(A, "a2c_loss", loss_spy)
    args = {"env_id": "ClockRandomEnd-v0", "num_envs": 3, "num_steps": 8, "total_timesteps": 5 * 24, "recurrent": True}
    A.main(A.Args(**(args | {"lstm_size": 8, "cuda": False, "progress": False, "eval_episodes": 0} | flags)))
    return seen


def test_the_update_replays_the_rollout_as_it_was_acted(in_tmp, monkeypatch):
    """The logits and values the update recomputes (the rollout replayed through the LSTM from the memory saved
    at its start) equal those the policy acted with, so the log-probabilities do too; the loop marks as an
    episode's start exactly the observations [0] that begin one; and a time limit bootstraps from V of the true
    final observation [5] with the memory of its own episode."""
    seen = recurrent_run(monkeypatch)
    T, N = 8, 3
    assert len(seen["losses"]) == 5
    for u, loss in enumerate(seen["losses"]):
        assert torch.equal(loss["starts"], loss["obs"][:, 0] == 0)
        acting = torch.cat(seen["acting"][u * T : (u + 1) * T])
        torch.testing.assert_close(loss["out"], acting, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loss["values"], seen["values"][u].flatten(), rtol=1e-5, atol=1e-6)
    assert any(loss["starts"].any() and not loss["starts"][:N].all() for loss in seen["losses"])  # starts inside
    checked = 0
    for (truncations, final_values, v_final), loss in zip(seen["final"], seen["losses"], strict=True):
        assert not final_values[~truncations].any()
        obs = loss["obs"][:, 0].view(T, N)
        for t, i in truncations.nonzero().tolist():
            if t >= CLOCK_LIMIT - 1 and obs[t - CLOCK_LIMIT + 1, i] == 0:  # wholly in this rollout: today's network
                torch.testing.assert_close(final_values[t, i], v_final, rtol=1e-5, atol=1e-6)
                checked += 1
    assert checked >= 2
    ends = [(loss["starts"].view(T, N)[1:] & ~loss["starts"].view(T, N)[:-1]).sum(0) for loss in seen["losses"]]
    assert len({tuple(e.tolist()) for e in ends}) > 1  # the environments' episodes end at steps of their own


def test_a_checkpoint_of_an_older_version_resumes_with_the_new_flags_at_their_defaults(in_tmp, monkeypatch, capsys):
    """A checkpoint written before --recurrent and lr_from existed (neither in it) resumes as the run it was:
    feedforward, whatever --recurrent says now (and a note says it is ignored)."""
    flags = {"env_id": "CartPoleNoVelocity-v1", "num_envs": 4, "num_steps": 8, "cuda": False, "progress": False}
    first = A.main(A.Args(total_timesteps=10 * 32, checkpoint_every=10 * 32, eval_episodes=0, **flags))
    path = os.path.join(first["run_dir"], "checkpoint.pt")
    old = torch.load(path, weights_only=False)
    del old["lr_from"], old["args"]["recurrent"]
    torch.save(old, path)
    monkeypatch.setattr(sys, "argv", ["x.py", "--resume", path, "--recurrent", "--total-timesteps", "640"])
    resumed = A.main(A.Args(resume=path, recurrent=True, total_timesteps=20 * 32, eval_episodes=0, **flags))
    assert resumed["global_step"] == 20 * 32
    assert not any(k.startswith("lstm") for k in torch.load(path, weights_only=False)["agent"])
    assert "note: --recurrent ignored" in capsys.readouterr().out


def test_evaluation_carries_its_own_memory_and_zeroes_it_at_each_episode():
    """evaluate with a recurrent policy on ClockTruncated-v0 (episodes [0], ..., [4]): at each step the LSTM gets
    the memory it left at the step before, and is told an episode begins (so zeroes it) exactly at each [0]."""
    torch.manual_seed(0)
    agent = A.ActorCritic((1,), gym.spaces.Discrete(2), 8, shared=False, lstm_size=4)
    calls = []
    agent.lstm.register_forward_hook(lambda _m, inputs, output: calls.append((inputs[1], inputs[2], output[1])))
    returns, _ = A.evaluate(agent, "ClockTruncated-v0", None, 3, seed=0)
    assert returns == [5.0, 5.0, 5.0] and len(calls) == 15
    for i, (state_in, starts, _) in enumerate(calls):
        assert starts.tolist() == [i % 5 == 0], i
        if i > 0:
            assert all(torch.equal(s, before) for s, before in zip(state_in, calls[i - 1][2], strict=True)), i


@pytest.mark.parametrize("recurrent", [True, False])
def test_a_resumed_run_continues_its_networks_optimizer_step_and_random_streams(recurrent, in_tmp, monkeypatch):
    """Resumed from a checkpoint, the run's first action is sampled by the saved network from the saved random
    streams (torch's, NumPy's and Python's, as they were after the last update), its first Adam step continues the
    saved optimizer state, and its steps go on from the saved step to the end (new episodes start)."""
    flags = {"env_id": "CartPoleNoVelocity-v1", "num_envs": 4, "num_steps": 8, "recurrent": recurrent}
    flags |= {"lstm_size": 16, "cuda": False, "progress": False, "eval_episodes": 0}
    half = A.main(A.Args(total_timesteps=20 * 32, checkpoint_every=20 * 32, **flags))
    path = os.path.join(half["run_dir"], "checkpoint.pt")
    saved = torch.load(path, weights_only=False)
    seen, real_sample, real_step = {}, A.ActorCritic.sample, torch.optim.Adam.step

    def sample_spy(self, out):
        if "rng" not in seen:
            seen["rng"] = (torch.get_rng_state(), np.random.get_state(), random.getstate())
            seen["params"] = {k: v.clone() for k, v in self.state_dict().items()}
        return real_sample(self, out)

    def step_spy(self, *args, **kwargs):
        seen.setdefault("adam_steps", [s["step"].item() for s in self.state.values()])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(A.ActorCritic, "sample", sample_spy)
    monkeypatch.setattr(torch.optim.Adam, "step", step_spy)
    monkeypatch.setattr(sys, "argv", ["x.py", "--resume", path, "--total-timesteps", str(40 * 32)])
    rest = A.main(A.Args(resume=path, total_timesteps=40 * 32, cuda=False, progress=False))
    assert rest["run_dir"] == half["run_dir"] and rest["global_step"] == 40 * 32
    assert min(rest["episodic_steps"]) > 20 * 32
    torch_rng, numpy_rng, python_rng = seen["rng"]
    assert torch.equal(torch_rng, saved["rng"]["torch"]) and python_rng == saved["rng"]["python"]
    assert all(np.array_equal(a, b) for a, b in zip(numpy_rng, saved["rng"]["numpy"], strict=True))
    for key, value in saved["agent"].items():
        assert torch.equal(seen["params"][key], value), key
    assert seen["adam_steps"] == [20] * len(saved["optimizer"]["state"])  # 20 steps taken before the stop


def test_the_annealed_learning_rate_adam_applies_over_a_run_and_after_a_resume(in_tmp, monkeypatch):
    """--anneal-lr, as Adam uses it at each step: lr0 (1 - s / end) at the step s each update starts from; stopped
    half-way (SIGTERM) and resumed with --resume alone, the same line on; resumed with a longer
    --total-timesteps, from the rate it had reached down to 0 at the new end, without a jump."""
    lr0, used, real_step = 0.01, [], torch.optim.Adam.step

    def step_spy(self, *args, **kwargs):
        used.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    def update_spy(self, step, sps, recent):
        if step == 256 and not used[8:]:
            signal.raise_signal(signal.SIGTERM)  # the script's handler: finish the update, checkpoint, stop

    monkeypatch.setattr(torch.optim.Adam, "step", step_spy)
    monkeypatch.setattr(A.ProgressReport, "update", update_spy)
    flags = {"num_envs": 4, "num_steps": 8, "cuda": False, "progress": False, "eval_episodes": 0}
    first = A.main(A.Args(total_timesteps=512, anneal_lr=True, learning_rate=lr0, **flags))
    path = os.path.join(first["run_dir"], "checkpoint.pt")
    assert first["global_step"] == 256
    np.testing.assert_allclose(used, [lr0 * (1 - 32 * u / 512) for u in range(8)], rtol=1e-12)
    runs = [(["--resume", path], 512), (["--resume", path, "--total-timesteps", "1024"], 1024)]
    for argv, end in runs:
        used.clear()
        monkeypatch.setattr(sys, "argv", ["x.py", *argv])
        resumed = A.main(A.Args(resume=path, total_timesteps=end, cuda=False, progress=False, eval_episodes=0))
        assert resumed["global_step"] == end
        want = [lr0 / 2 * (1 - (s - 256) / (end - 256)) for s in range(256, end, 32)]
        np.testing.assert_allclose(used, want, rtol=1e-9)


def test_norm_adv_refuses_a_batch_of_one(in_tmp, capsys):
    """--norm-adv over a batch of one advantage (std NaN) would make the parameters NaN: one line, exit 2."""
    args = A.Args(num_envs=1, num_steps=1, total_timesteps=8, norm_adv=True, cuda=False, progress=False)
    with pytest.raises(SystemExit) as exit_info:
        A.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: --norm-adv: "), err
    assert not os.path.exists("runs")


def test_frame_stack_concatenates_the_last_observations_of_the_episode_only():
    """--frame-stack 3 on CartPoleNoVelocity-v1 (2 numbers an observation): 6 numbers, zeros before the episode's
    first observation, never one of the episode before; Atari with --frame-stack 1 sees one frame."""
    envs = A.make_envs("CartPoleNoVelocity-v1", 2, 3)
    assert envs.single_observation_space.shape == (6,)
    obs, _ = envs.reset(seed=0)
    assert (obs[:, :4] == 0).all() and (obs[:, 4:] != 0).all()
    history = [obs]
    for _ in range(200):
        obs, _, terminations, truncations, infos = envs.step(np.zeros(2, dtype=np.int64))  # push left: falls soon
        for i in np.flatnonzero(terminations | truncations):
            assert (obs[i, :4] == 0).all()  # the new episode: nothing of the one that ended
            np.testing.assert_array_equal(infos["final_obs"][i][:4], history[-1][i][2:])  # the old, shifted by one
        history.append(obs)
    assert len(history) == 201
    envs.close()
    atari = A.make_envs("PongNoFrameskip-v4", 1, 1)
    assert atari.single_observation_space.shape == (1, 84, 84)
    atari.close()


def test_recurrent_atari_on_one_frame_trains(in_tmp):
    """--recurrent --frame-stack 1 on an Atari id: the Nature CNN on one 84x84 frame, the LSTM after it."""
    args = A.Args(env_id="BreakoutNoFrameskip-v4", recurrent=True, frame_stack=1, num_envs=2, num_steps=5)
    result = A.main(dataclasses.replace(args, total_timesteps=40, cuda=False, progress=False, eval_episodes=1))
    assert result["global_step"] == 40 and len(result["eval_returns"]) == 1
    logged = scalars(result["run_dir"])
    assert all(np.isfinite(v) for _, v in logged["losses/policy_loss"] + logged["losses/value_loss"])


def test_two_recurrent_processes_under_torchrun_stay_identical(tmp_path):
    """--recurrent under torchrun: each process carries its own environments' memory; the replicas stay equal."""
    out = run_ddp_check(tmp_path, {"recurrent": True, "env_id": "CartPoleNoVelocity-v1", "lstm_size": 16})
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["updates"] for r in ranks] == [4096 // (2 * 4 * 8)] * 2
    assert all(r["max_diff"] == 0.0 for r in ranks)
    first = [torch.load(out / f"rank{r}.pt", weights_only=False)["batch"][0] for r in (0, 1)]
    assert not torch.equal(first[0], first[1])  # each process its own environments


# --autoencoder: the trunk as an autoencoder's encoder, pretrained offline or trained online with an auxiliary loss
AE_FLAGS = {"env_id": "BreakoutNoFrameskip-v4", "num_envs": 2, "num_steps": 4, "cuda": False, "progress": False}


@pytest.mark.parametrize("frames", [4, 1])
def test_the_decoder_mirrors_the_trunk_back_to_the_frames(frames):
    """decoder(trunk(x)) has the shape of x, the frame stack included (--frame-stack 1: one frame)."""
    agent = A.ActorCritic((frames, 84, 84), gym.spaces.Discrete(4), 64, shared=True, decoder=True)
    obs = torch.randint(0, 256, (3, frames, 84, 84), dtype=torch.uint8)
    assert A.reconstruct(agent, obs)[1].shape == obs.shape


def test_the_reconstruction_loss_is_the_mean_squared_difference_from_the_frames_in_0_1():
    """L_AE = E ||x~ - x||^2 per value, x = obs / 255 and x~ = decoder(trunk(x)), summed value by value here."""
    torch.manual_seed(0)
    agent = A.ActorCritic((4, 84, 84), gym.spaces.Discrete(4), 64, shared=True, decoder=True)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    loss, x_hat = A.reconstruct(agent, obs)
    torch.testing.assert_close(x_hat, agent.decoder(agent.trunk(obs.float() / 255)))
    total = sum((value - pixel / 255) ** 2 for value, pixel in zip(x_hat.flatten().tolist(), obs.flatten().tolist()))
    assert loss.item() == pytest.approx(total / obs.numel(), rel=1e-5)


@pytest.mark.parametrize("flags", [{}, {"recurrent": True, "frame_stack": 1}])
def test_online_the_trunk_gets_a2cs_gradient_plus_ae_coef_times_the_autoencoders(flags, in_tmp, monkeypatch):
    """One update of the real loop with --autoencoder online: the gradients that reach Adam are those of the
    script's a2c_loss on the batch the loop collected plus ae_coef times those of mean((decoder(trunk(x)) - x)^2),
    x = obs / 255: both in the trunk, L_AE's alone in the decoder, A2C's alone in the heads (and the LSTM of
    --recurrent). The checkpoint keeps the decoder and the optimiser's state of it."""
    seen, steps, real_loss, real_step = {}, [], A.a2c_loss, torch.optim.Adam.step

    def loss_spy(agent, *args):
        seen.update(agent=agent, args=[a.clone() if torch.is_tensor(a) else a for a in args])
        return real_loss(agent, *args)

    def step_spy(self, *args, **kwargs):
        steps.append(([p.grad.clone() for g in self.param_groups for p in g["params"]], copy.deepcopy(seen["agent"])))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(A, "a2c_loss", loss_spy)
    monkeypatch.setattr(torch.optim.Adam, "step", step_spy)
    run = {"autoencoder": "online", "ae_coef": 0.3, "max_grad_norm": 1e9, "total_timesteps": 8, "checkpoint_every": 8}
    result = A.main(A.Args(**AE_FLAGS, **run, **flags, eval_episodes=0))
    ((grads, agent),) = steps
    params = list(agent.parameters())
    zero = lambda grads: [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    a2c = zero(torch.autograd.grad(real_loss(agent, *seen["args"])[0], params, allow_unused=True))
    x = seen["args"][0].float() / 255
    ae = zero(
        torch.autograd.grad((agent.decoder(agent.trunk(x)) - x).pow(2).sum() / x.numel(), params, allow_unused=True)
    )
    names = [name for name, _ in agent.named_parameters()]
    for name, got, g_a2c, g_ae in zip(names, grads, a2c, ae, strict=True):
        torch.testing.assert_close(got, g_a2c + 0.3 * g_ae, rtol=1e-4, atol=1e-7, msg=name)
        assert (g_a2c.abs().sum() > 0) == (not name.startswith("decoder.")), name
        assert (g_ae.abs().sum() > 0) == name.startswith(("trunk.", "decoder.")), name
    saved = torch.load(os.path.join(result["run_dir"], "checkpoint.pt"), weights_only=False)
    assert any(key.startswith("decoder.") for key in saved["agent"]) and len(saved["optimizer"]["state"]) == len(params)


def images(run_dir: str) -> list[tuple[int, int, int]]:
    """The images/reconstruction of a run folder: (step, height, width) of each."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"images": 0})
    acc.Reload()
    return [(e.step, e.height, e.width) for e in acc.Images("images/reconstruction")]


def test_offline_pretraining_trains_the_autoencoder_alone_and_the_loop_starts_from_it_frozen(in_tmp, monkeypatch):
    """--autoencoder offline: pretraining on a random agent's frames changes every parameter of the trunk and the
    decoder and nothing else; the loop's first update starts from exactly the pretrained networks, and no update
    changes the trunk or the decoder (frozen) while the heads learn; a resumed run neither pretrains again nor
    thaws them. L_AE is logged at every update, frames beside their reconstructions at the end of each run."""
    seen, real_pretrain, real_loss = {"pretrained": 0}, A.pretrain_autoencoder, A.a2c_loss

    def pretrain_spy(agent, *args):
        seen["before"] = copy.deepcopy(agent.state_dict())
        losses = real_pretrain(agent, *args)
        seen["after"], seen["pretrained"] = copy.deepcopy(agent.state_dict()), seen["pretrained"] + 1
        return losses

    def loss_spy(agent, *args):
        seen.setdefault("first_update", copy.deepcopy(agent.state_dict()))
        seen["agent"] = agent
        return real_loss(agent, *args)

    monkeypatch.setattr(A, "pretrain_autoencoder", pretrain_spy)
    monkeypatch.setattr(A, "a2c_loss", loss_spy)
    flags = AE_FLAGS | {"autoencoder": "offline", "autoencoder_steps": 128, "eval_episodes": 0}
    first = A.main(A.Args(**flags, total_timesteps=32, checkpoint_every=32))
    before, after = seen["before"], seen["after"]
    autoencoder = {key for key in before if key.startswith(("trunk.", "decoder."))}
    assert {key for key in before if not torch.equal(before[key], after[key])} == autoencoder
    assert all(torch.equal(seen["first_update"][key], after[key]) for key in after)
    path = os.path.join(first["run_dir"], "checkpoint.pt")
    monkeypatch.setattr(sys, "argv", ["x.py", "--resume", path, "--total-timesteps", "64"])
    resumed = A.main(A.Args(resume=path, total_timesteps=64, cuda=False, progress=False, eval_episodes=0))
    assert resumed["global_step"] == 64 and seen["pretrained"] == 1
    final = seen["agent"].state_dict()
    assert {key for key in final if not torch.equal(final[key], after[key])} == set(final) - autoencoder
    assert len(scalars(first["run_dir"])["losses/reconstruction"]) == 64 // 8
    logged = images(first["run_dir"])
    assert (32, 4 * 84, 2 * 84) in logged and (64, 4 * 84, 2 * 84) in logged


class MovingSquare(gym.Env):
    """A tiny image environment: a white 12x12 square on black, moved 6 pixels by each action (4 directions)."""

    observation_space = gym.spaces.Box(0, 255, (1, 84, 84), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.integers(0, 73, 2)
        return self.render_frame(), {}

    def step(self, action):
        self.position = np.clip(self.position + 6 * np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])[action], 0, 72)
        return self.render_frame(), 0.0, False, False, {}

    def render_frame(self):
        frame = np.zeros((1, 84, 84), np.uint8)
        frame[0, self.position[0] : self.position[0] + 12, self.position[1] : self.position[1] + 12] = 255
        return frame


def test_pretraining_on_a_random_agents_frames_learns_to_reconstruct_them():
    """pretrain_autoencoder on MovingSquare, 512 frames of a random agent (24 steps): L_AE falls, and on new frames
    it ends below that of the best output that ignores its input (the mean frame): the features locate the square."""
    torch.manual_seed(0)
    np.random.seed(0)
    envs = gym.vector.SyncVectorEnv([MovingSquare] * 4)
    agent = A.ActorCritic((1, 84, 84), gym.spaces.Discrete(4), 64, shared=True, decoder=True)
    losses = A.pretrain_autoencoder(agent, torch.optim.Adam(agent.parameters(), lr=1e-3), envs, 512, 0, 1)
    assert len(losses) == 3 * 512 // 64 and losses[-1] < 0.7 * losses[0]
    obs = torch.as_tensor(
        np.concatenate([envs.reset(seed=1)[0]] + [envs.step(np.random.randint(4, size=4))[0] for _ in range(50)])
    )
    x = obs.float() / 255
    with torch.no_grad():
        fresh, mean_frame = A.reconstruct(agent, obs)[0].item(), (x - x.mean(0)).pow(2).mean().item()
    assert fresh < 0.8 * mean_frame, (fresh, mean_frame)


@pytest.mark.parametrize(
    "flags,flag",
    [
        ({"env_id": "CartPole-v1", "autoencoder": "online"}, "--autoencoder"),  # vectors: nothing to reconstruct
        ({"autoencoder": "offline", "autoencoder_steps": 0}, "--autoencoder-steps"),
        ({"autoencoder": "online", "ae_coef": -0.5}, "--ae-coef"),
    ],
)
def test_autoencoder_flags_out_of_range_are_refused_in_one_line(flags, flag, in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        A.main(A.Args(**(AE_FLAGS | {"total_timesteps": 8, "eval_episodes": 0} | flags)))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: {flag}: "), err
    assert not os.path.exists("runs")


def test_two_offline_autoencoder_processes_under_torchrun_stay_identical(tmp_path):
    """--autoencoder offline under torchrun: pretraining averages the autoencoder's gradients over the processes
    (each with frames of its own), then the frozen trunk has none to average; the replicas stay equal throughout."""
    flags = {"env_id": "BreakoutNoFrameskip-v4", "autoencoder": "offline", "autoencoder_steps": 128}
    out = run_ddp_check(tmp_path, flags | {"total_timesteps": 64, "checkpoint_every": 64, "eval_episodes": 0})
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["updates"] for r in ranks] == [3 * 128 // 64 + 64 // (2 * 4 * 8)] * 2
    assert all(r["max_diff"] == 0.0 for r in ranks)
