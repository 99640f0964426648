"""Behaviour every script shares (../shared/STYLE.md): flags, run folders, TensorBoard keys, saving,
evaluation, seeding, progress output and errors. Each script built so far has an entry in SCRIPTS."""

import dataclasses
import importlib
import inspect
import os
import re
import signal

import pytest
import torch
from conftest import ROOT, run_script, scalars

# script -> a run that takes seconds, the keys it must log, and bad inputs with the flag the error must name
SCRIPTS = {
    "reinforce.py": {
        "tiny": {"total_timesteps": 2048, "num_envs": 4, "num_steps": 128},
        "keys": [
            "charts/episodic_return",
            "charts/episodic_length",
            "charts/SPS",
            "losses/policy_loss",
            "losses/value_loss",
            "losses/entropy",
            "losses/explained_variance",
        ],
        "bad": [
            (["--total-timesteps", "0"], "--total-timesteps"),
            (["--seed", "-1"], "--seed"),
            (["--num-envs", "-1"], "--num-envs"),
            (["--num-steps", "0"], "--num-steps"),
            (["--total-timesteps", "100", "--num-envs", "4", "--num-steps", "64"], "--total-timesteps"),
            (["--gamma", "1.5"], "--gamma"),
            (["--learning-rate", "0"], "--learning-rate"),
            (["--env-id", "CartPol-v1"], "--env-id"),
            (["--env-id", "FrozenLake-v1"], "--env-id"),  # Discrete observations: not supported
            (["--env-id", "Blackjack-v1"], "--env-id"),  # Tuple observations: not supported
            (["--env-id", "CarRacing-v3"], "--env-id"),  # needs Box2D: unsupported or not installed
            (["--capture-video", "--eval-episodes", "0"], "--capture-video"),
            (["--eval-episodes", "-1"], "--eval-episodes"),
        ],
    },
    "actor_critic_gae.py": {
        "tiny": {"total_timesteps": 2048, "num_envs": 4, "num_steps": 8},
        "keys": [
            "charts/episodic_return",
            "charts/episodic_length",
            "charts/SPS",
            "charts/learning_rate",
            "losses/policy_loss",
            "losses/value_loss",
            "losses/entropy",
            "losses/explained_variance",
            "losses/grad_norm",
        ],
        "bad": [
            (["--total-timesteps", "0"], "--total-timesteps"),
            (["--seed", "-1"], "--seed"),
            (["--num-envs", "0"], "--num-envs"),
            (["--total-timesteps", "100", "--num-envs", "16", "--num-steps", "8"], "--total-timesteps"),
            (["--gae-lambda", "1.5"], "--gae-lambda"),
            (["--gamma", "-0.1"], "--gamma"),
            (["--max-grad-norm", "0"], "--max-grad-norm"),
            (["--ent-coef", "-1"], "--ent-coef"),
            (["--env-id", "CartPol-v1"], "--env-id"),
            (["--env-id", "Blackjack-v1"], "--env-id"),
            (["--env-id", "ALE/NotAGame-v5"], "--env-id"),
            (["--env-id", "ALE/Pong-v5", "--capture-video"], "--capture-video"),
            (["--resume", "no/such/checkpoint.pt"], "--resume"),
            (["--capture-video", "--eval-episodes", "0"], "--capture-video"),
        ],
    },
    "dqn_atari.py": {
        "tiny": {
            "total_timesteps": 3000,
            "buffer_size": 3000,
            "learning_starts": 2900,
            "env_id": "BreakoutNoFrameskip-v4",
        },
        "keys": [
            "charts/episodic_return",
            "charts/episodic_length",
            "charts/epsilon",
            "charts/SPS",
            "losses/td_loss",
            "losses/q_values",
        ],
        "bad": [
            (["--total-timesteps", "0"], "--total-timesteps"),
            (["--seed", "-1"], "--seed"),
            (["--batch-size", "64", "--buffer-size", "32", "--learning-starts", "32"], "--batch-size"),
            (["--learning-starts", "16"], "--learning-starts"),
            (["--learning-starts", "2000000"], "--learning-starts"),
            (["--gamma", "1.5"], "--gamma"),
            (["--end-e", "-0.1"], "--end-e"),
            (["--tau", "0"], "--tau"),
            (["--env-id", "CartPole-v1"], "--env-id"),
            (["--env-id", "ALE/Breakot-v5"], "--env-id"),
            (["--env-id", "BreakoutNoFrameskip-v9"], "--env-id"),
            (["--resume", "no/such/checkpoint.pt"], "--resume"),
            (["--capture-video", "--eval-episodes", "0"], "--capture-video"),
        ],
    },
    "dqn_per_her.py": {
        "tiny": {"total_timesteps": 2000, "env_id": "CartPole-v1", "her": False, "learning_starts": 500},
        "keys": [
            "charts/episodic_return",
            "charts/episodic_length",
            "charts/epsilon",
            "charts/beta",
            "charts/SPS",
            "losses/td_loss",
            "losses/q_values",
        ],
        "bad": [
            (["--total-timesteps", "0"], "--total-timesteps"),
            (["--seed", "-1"], "--seed"),
            (["--batch-size", "64", "--buffer-size", "32", "--learning-starts", "32"], "--batch-size"),
            (["--learning-starts", "16"], "--learning-starts"),
            (["--per-alpha", "1.5"], "--per-alpha"),
            (["--per-beta0", "-1"], "--per-beta0"),
            (["--her-k", "0"], "--her-k"),
            (["--n-bits", "0"], "--n-bits"),
            (
                ["--n-bits", "40", "--buffer-size", "32", "--batch-size", "16", "--learning-starts", "16"],
                "--buffer-size",
            ),
            (["--env-id", "CartPole-v1"], "--her"),
            (["--env-id", "CartPol-v1", "--no-her"], "--env-id"),
            (["--env-id", "Pendulum-v1", "--no-her"], "--env-id"),
            (["--capture-video"], "--capture-video"),
            (["--resume", "no/such/checkpoint.pt"], "--resume"),
        ],
    },
}
ALL = list(SCRIPTS)


def load(script: str):
    return importlib.import_module(script.removesuffix(".py"))


def tiny_args(script: str, **overrides):
    module = load(script)
    return module.Args(**{**SCRIPTS[script]["tiny"], "progress": False, "cuda": False, **overrides})


@pytest.mark.parametrize("script", ALL)
def test_help_documents_every_flag(script, tmp_path):
    result = run_script(script, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    help_text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stdout).split())  # drop rich's box, join wrapped lines
    for field in dataclasses.fields(load(script).Args):
        flag = "--" + field.name.replace("_", "-")
        if not field.init:  # derived values are not flags
            assert flag not in help_text
            continue
        assert flag in help_text, f"{flag} missing from --help"
    # every flag has a docstring: tyro prints it, so the first words of each must appear
    source = (ROOT / script).read_text()
    docs = dict(re.findall(r'^    (\w+): [^\n]+\n    """(.+?)"""', source, re.MULTILINE | re.DOTALL))
    flags = [f.name for f in dataclasses.fields(load(script).Args) if f.init]
    assert set(flags) <= set(docs), f"fields without a docstring: {set(flags) - set(docs)}"
    for name, doc in [(name, docs[name]) for name in flags]:
        assert " ".join(doc.split()[:4]) in help_text, f"docstring of {name} not in --help"
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("script", ALL)
def test_short_run_writes_standard_keys(script, in_tmp):
    result = load(script).main(tiny_args(script, eval_episodes=2))
    run_dir = result["run_dir"]
    env_id = SCRIPTS[script]["tiny"].get("env_id", load(script).Args.env_id)
    assert re.fullmatch(rf"runs/{re.escape(env_id)}__{script[:-3]}__1__\d{{10}}", run_dir)
    logged = scalars(run_dir)
    for key in SCRIPTS[script]["keys"] + ["eval/episodic_return"]:
        assert key in logged, f"{key} not logged"
    assert len(logged["eval/episodic_return"]) == 2
    # the logged episodic returns are those main saw, at increasing steps
    assert [v for _, v in logged["charts/episodic_return"]] == pytest.approx(result["episodic_returns"])
    steps = [s for s, _ in logged["charts/episodic_return"]]
    assert steps == sorted(steps) and steps[-1] <= result["global_step"]


@pytest.mark.parametrize("script", ALL)
def test_save_model_and_evaluate_it(script, in_tmp):
    result = load(script).main(tiny_args(script, save_model=True, eval_episodes=3))
    path = os.path.join(result["run_dir"], "model.pt")
    state = torch.load(path, weights_only=False)
    assert state["args"]["seed"] == 1 and len(result["eval_returns"]) == 3
    assert not [f for f in os.listdir(result["run_dir"]) if f.endswith(".tmp")]


@pytest.mark.parametrize("script", ALL)
def test_same_seed_same_returns_and_separate_run_folders(script, in_tmp):
    a = load(script).main(tiny_args(script, seed=7, eval_episodes=0))
    b = load(script).main(tiny_args(script, seed=7, eval_episodes=0))
    c = load(script).main(tiny_args(script, seed=8, eval_episodes=0))
    assert len(a["episodic_returns"]) > 5
    assert a["episodic_returns"] == b["episodic_returns"]
    assert a["episodic_returns"] != c["episodic_returns"]
    assert a["run_dir"] != b["run_dir"]  # two runs in the same second never share (or overwrite) a folder


@pytest.mark.parametrize("script,flags,flag", [(s, f, n) for s in ALL for f, n in SCRIPTS[s]["bad"]])
def test_bad_input_exits_2_naming_the_flag(script, flags, flag, tmp_path):
    result = run_script(script, *flags, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], result.stderr
    assert not os.path.exists(tmp_path / "runs"), "bad input must write nothing"


@pytest.mark.parametrize("script", ALL)
def test_capture_video_without_moviepy_is_a_clear_error(script, in_tmp, monkeypatch, capsys):
    module = load(script)
    real = importlib.util.find_spec
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda n, *a: None if n == "moviepy" else real(n, *a))
    with pytest.raises(SystemExit) as exit_info:
        module.main(tiny_args(script, capture_video=True))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--capture-video" in err and "pip install moviepy" in err
    assert not os.path.exists("runs")


@pytest.mark.parametrize("script", ALL)
@pytest.mark.skipif(importlib.util.find_spec("moviepy") is None, reason="moviepy not installed")
def test_capture_video_records_evaluation(script, in_tmp):
    result = load(script).main(tiny_args(script, capture_video=True, eval_episodes=1))
    assert any(f.endswith(".mp4") for f in os.listdir(os.path.join(result["run_dir"], "videos")))


@pytest.mark.parametrize("script", ALL)
def test_progress_lines_when_not_a_terminal(script, in_tmp, capsys):
    load(script).main(tiny_args(script, progress=True, eval_episodes=0))
    lines = [line for line in capsys.readouterr().out.splitlines() if "SPS" in line]
    assert lines and re.search(r"step \d+/\d+ \| \d+ SPS \| ETA \d+s", lines[-1])
    load(script).main(tiny_args(script, progress=False, eval_episodes=0))
    assert "SPS" not in capsys.readouterr().out


# Resume: the three scripts that checkpoint. Each a tiny run whose schedule (epsilon, or the annealed learning
# rate) spans the whole run, so that a schedule stretched over another length shows.
RESUMABLE = {
    "actor_critic_gae.py": {"total_timesteps": 2048, "num_envs": 4, "num_steps": 8, "anneal_lr": True},
    "dqn_atari.py": {
        "total_timesteps": 800,
        "buffer_size": 800,
        "learning_starts": 300,
        "exploration_fraction": 1.0,
        "batch_size": 8,
        "train_frequency": 16,
    },
    "dqn_per_her.py": {
        "total_timesteps": 1600,
        "env_id": "CartPole-v1",
        "her": False,
        "learning_starts": 500,
        "exploration_fraction": 1.0,
    },
}


def schedule_errors(script: str, module, run_dir: str, args, resumed_at: int) -> list:
    """Logged schedule values after the resume step that differ from the run's own schedule, fixed by its first
    length (args.total_timesteps): epsilon for the DQN scripts, the annealed learning rate for A2C (which, given a
    new length, falls linearly from its value at the resume to 0 at the new end)."""
    logged = scalars(run_dir)
    errors = []
    if script == "actor_critic_gae.py":
        batch, total = args.num_envs * args.num_steps, args.total_timesteps
        u0 = resumed_at // batch
        lr0 = args.learning_rate * (1 - u0 / (total // batch))
        for step, lr in logged["charts/learning_rate"]:
            u = step // batch - 1  # logged after update u
            if u >= u0:
                new_total = max(s for s, _ in logged["charts/learning_rate"]) // batch
                want = lr0 * (1 - (u - u0) / (new_total - u0))
                if abs(lr - want) > 1e-7:
                    errors.append((step, lr, want))
    else:
        explore = int(args.exploration_fraction * args.total_timesteps)
        for step, epsilon in logged["charts/epsilon"]:
            want = module.linear_schedule(args.start_e, args.end_e, explore, step - args.num_envs)  # acted before
            if step > resumed_at and abs(epsilon - want) > 1e-6:
                errors.append((step, epsilon, want))
    return errors


@pytest.mark.parametrize("script", list(RESUMABLE))
def test_resume_continues_the_same_run(script, in_tmp, monkeypatch, capsys):
    """Stopped half-way (SIGTERM), then resumed with --resume alone: the run goes on to its own length, not the
    default's, with its schedules where they were. Given a longer --total-timesteps on purpose, it extends the
    run and says so, its schedules without a jump; given the step it is at, it says it is at its end and trains
    nothing."""
    module = load(script)
    args = tiny_args(script, **RESUMABLE[script], eval_episodes=0)
    real_update, limit = module.ProgressReport.update, {"step": args.total_timesteps, "stop_at": None}

    def update(self, step, sps, recent):
        assert step <= limit["step"], f"the resumed run went past its length: step {step}"
        if limit["stop_at"] is not None and step >= limit["stop_at"]:
            limit["stop_at"] = None
            signal.raise_signal(signal.SIGTERM)  # the script's handler: finish the step, checkpoint, stop
        real_update(self, step, sps, recent)

    monkeypatch.setattr(module.ProgressReport, "update", update)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        limit["stop_at"] = args.total_timesteps // 2
        first = module.main(args)
        path = os.path.join(first["run_dir"], "checkpoint.pt")
        stopped_at = first["global_step"]
        assert first["interrupted"] and stopped_at < args.total_timesteps
        capsys.readouterr()

        resumed = module.main(module.Args(resume=path, progress=False, cuda=False, eval_episodes=0))
        assert resumed["run_dir"] == first["run_dir"] and resumed["global_step"] == args.total_timesteps
        assert f"resume: step {stopped_at} of {args.total_timesteps}" in capsys.readouterr().out
        assert not schedule_errors(script, module, first["run_dir"], args, stopped_at)

        at_end = module.main(
            module.Args(resume=path, total_timesteps=stopped_at, progress=False, cuda=False, eval_episodes=0)
        )
        assert at_end["global_step"] == stopped_at and "already the end" in capsys.readouterr().out

        limit["step"] = 2 * args.total_timesteps
        extended = module.main(
            module.Args(
                resume=path, total_timesteps=2 * args.total_timesteps, progress=False, cuda=False, eval_episodes=0
            )
        )
        assert extended["global_step"] == 2 * args.total_timesteps
        assert "changes the run's length" in capsys.readouterr().out
        assert not schedule_errors(script, module, first["run_dir"], args, stopped_at)
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


def bad_checkpoints(folder, script: str) -> dict:
    """Files that --resume must refuse: name -> path."""
    other = next(s for s in RESUMABLE if s != script)
    good = {"script": script, "args": {}, "global_step": 1}
    torch.save(good, folder / "whole.pt")
    data = (folder / "whole.pt").read_bytes()
    files = {"truncated": data[: len(data) // 2], "corrupt": bytes(range(256)) * 8, "text": b"not a checkpoint\n"}
    for name, content in files.items():
        (folder / f"{name}.pt").write_bytes(content)
    torch.save({"q_network": {}, "global_step": 5}, folder / "not-a-checkpoint.pt")
    torch.save({**good, "script": other}, folder / "other-script.pt")
    (folder / "whole.pt").unlink()
    return {name: folder / f"{name}.pt" for name in [*files, "not-a-checkpoint", "other-script"]}


@pytest.mark.parametrize("script", list(RESUMABLE))
def test_resume_refuses_a_bad_file_in_one_line_and_changes_nothing(script, in_tmp, capsys):
    module = load(script)
    files = bad_checkpoints(in_tmp, script)
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in in_tmp.rglob("*")}
    for name, path in files.items():
        with pytest.raises(SystemExit) as exit_info:
            module.main(module.Args(resume=str(path), progress=False, cuda=False))
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: --resume: "), (name, err)
        assert f"valid: a checkpoint.pt of {script}" in err[0], err
        if name == "other-script":
            assert next(s for s in RESUMABLE if s != script) in err[0]
    assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in in_tmp.rglob("*")} == before  # nothing written
    result = run_script(script, "--resume", str(files["truncated"]), cwd=in_tmp)  # as a user meets it: no traceback
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--resume" in result.stderr


USER_ENV = """
import gymnasium as gym
import numpy as np


class NoRender(gym.Env):
    # a user's own environment: its constructor takes no render_mode
    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.full(2, 0.5 * action, np.float32), float(action), False, False, {}


gym.register("NoRender-v0", entry_point=NoRender, max_episode_steps=10)
"""
USER_ENV_FLAGS = {
    "reinforce.py": ["--total-timesteps", "512", "--num-envs", "2", "--num-steps", "256"],
    "actor_critic_gae.py": ["--total-timesteps", "512"],
    "dqn_per_her.py": ["--no-her", "--total-timesteps", "300", "--learning-starts", "200", "--batch-size", "32"],
}


@pytest.mark.parametrize("script", list(USER_ENV_FLAGS))
def test_a_users_own_environment_in_module_form_without_render_mode(script, tmp_path, monkeypatch):
    """--env-id mymod:NoRender-v0, gymnasium's form: the module is imported (it registers the id), and an
    environment whose constructor takes no render_mode trains and evaluates."""
    (tmp_path / "mymod.py").write_text(USER_ENV)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    flags = ["--env-id", "mymod:NoRender-v0", "--eval-episodes", "1", "--no-progress", *USER_ENV_FLAGS[script]]
    result = run_script(script, *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"eval: mean return (\d+\.\d) over 1 episodes", result.stdout), result.stdout  # 0 to 10
    assert [p.name.split("__")[0] for p in (tmp_path / "runs").iterdir()] == ["mymod:NoRender-v0"]
    missing = run_script(script, "--env-id", "nomod:NoRender-v0", cwd=tmp_path)
    assert missing.returncode == 2 and "--env-id" in missing.stderr and "nomod" in missing.stderr


# The plumbing the scripts share is one text, copied into each file (a reader never opens a second file)
SHARED_TEXT = [
    "fail",
    "check_env_id",
    "load_checkpoint",
    "resume_args",
    "say_where_resumed",
    "save_atomically",
    "linear_schedule",
    "categorical_log_prob",
    "categorical_entropy",
    "gaussian_log_prob",
    "gaussian_entropy",
]


@pytest.mark.parametrize("name", SHARED_TEXT)
def test_shared_helpers_are_one_text_in_every_script_that_has_them(name):
    texts = {s: inspect.getsource(getattr(load(s), name)) for s in ALL if hasattr(load(s), name)}
    assert len(texts) >= 2, f"{name} is in {list(texts)} only"
    assert len(set(texts.values())) == 1, f"{name} differs between {list(texts)}: edit it the same way in each"
