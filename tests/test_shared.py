"""Behaviour every script shares (../shared/STYLE.md): flags, run folders, TensorBoard keys, saving,
evaluation, seeding, progress output and errors. Each script built so far has an entry in SCRIPTS."""

import ast
import dataclasses
import importlib
import inspect
import os
import random
import re
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
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
            (["--env-id", "Blackjack-v1"], "--env-id"),  # Tuple observations: not supported
            (["--env-id", "CarRacing-v3"], "--env-id"),  # needs Box2D: unsupported or not installed
            (["--capture-video", "--eval-episodes", "0"], "--capture-video"),
            (["--eval-episodes", "-1"], "--eval-episodes"),
            (["--torch-threads", "-1"], "--torch-threads"),
            (["--norm-adv", "--num-envs", "1", "--num-steps", "1"], "--norm-adv"),  # no std of one advantage
            (["--resume", "no/such/checkpoint.pt"], "--resume"),
            (["--evaluate", "no/such/model.pt"], "--evaluate"),
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
            (["--recurrent", "--lstm-size", "0"], "--lstm-size"),
            (["--frame-stack", "0"], "--frame-stack"),
            (["--env-id", "CartPol-v1"], "--env-id"),
            (["--env-id", "Blackjack-v1"], "--env-id"),
            (["--env-id", "ALE/NotAGame-v5"], "--env-id"),
            (["--env-id", "ALE/Pong-v5", "--capture-video"], "--capture-video"),
            (["--resume", "no/such/checkpoint.pt"], "--resume"),
            (["--capture-video", "--eval-episodes", "0"], "--capture-video"),
            (["--torch-threads", "-1"], "--torch-threads"),
            (["--evaluate", "no/such/model.pt"], "--evaluate"),
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
            (["--n-step", "0"], "--n-step"),
            (["--env-id", "CartPole-v1"], "--env-id"),
            (["--env-id", "ALE/Breakot-v5"], "--env-id"),
            (["--env-id", "BreakoutNoFrameskip-v9"], "--env-id"),
            (["--resume", "no/such/checkpoint.pt"], "--resume"),
            (["--capture-video", "--eval-episodes", "0"], "--capture-video"),
            (["--total-timesteps", "3000"], "--learning-starts"),  # below the default 80k: never a gradient step
            (["--evaluate", "no/such/model.pt"], "--evaluate"),
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
            (["--buffer-size", "100000000000"], "--buffer-size"),  # more than the machine's memory
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
            (["--total-timesteps", "200"], "--learning-starts"),  # below the default 256: never a gradient step
            (["--evaluate", "no/such/model.pt"], "--evaluate"),
        ],
    },
}
ALL = list(SCRIPTS)


def load(script: str):
    return importlib.import_module(script.removesuffix(".py"))


def tiny_args(script: str, **overrides):
    module = load(script)
    return module.Args(**{**SCRIPTS[script]["tiny"], "progress": False, "cuda": False, **overrides})


@pytest.mark.parametrize("script", ["reinforce.py", "actor_critic_gae.py"])  # the two that round to whole updates
def test_resuming_a_finished_run_trains_nothing_and_leaves_its_folder(script, in_tmp, monkeypatch, capsys):
    """A run whose --total-timesteps is not a whole number of updates ends short of it; its last checkpoint is
    still the end: resumed, it says so and exits 0, and no file of its folder changes (no update, no evaluation)."""
    module = load(script)
    finished = module.main(tiny_args(script, total_timesteps=3000, checkpoint_every=1000, eval_episodes=1))
    path, run_dir = os.path.join(finished["run_dir"], "checkpoint.pt"), finished["run_dir"]
    assert finished["global_step"] < 3000 and "runs as" in capsys.readouterr().out
    files = {f: os.path.getsize(os.path.join(run_dir, f)) for f in os.listdir(run_dir)}
    monkeypatch.setattr(sys, "argv", [script, "--resume", path])
    with pytest.raises(SystemExit) as resumed:
        module.main(module.Args(resume=path, progress=False, cuda=False))
    assert resumed.value.code == 0 and "already the end: nothing to train" in capsys.readouterr().out
    assert {f: os.path.getsize(os.path.join(run_dir, f)) for f in os.listdir(run_dir)} == files


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
    assert load(script).Args.torch_threads == 1  # the default; --torch-threads reaches torch:
    try:
        result = load(script).main(tiny_args(script, eval_episodes=2, torch_threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
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


EVALUATE = {"dqn_atari.py": {"eval_epsilon": 0.0}}  # greedy: the same games whatever the evaluation's rng
OTHER_ENV = {"dqn_atari.py": "PongNoFrameskip-v4"}  # an env id the saved run did not use (else Acrobot-v1)


@pytest.mark.parametrize("script", ALL)
def test_save_model_say_where_it_went_and_evaluate_it_without_training(script, in_tmp, capsys):
    """A run says its folder first and ends with a summary naming what it saved. Then --evaluate model.pt: the saved
    run's environment and network (an --env-id given now does not override the file's), --eval-episodes episodes
    of the evaluation policy with the same returns as the evaluation at the end of training, logged to a new run
    folder that holds only eval/ scalars; the training run's folder is left as it was."""
    module = load(script)
    trained = module.main(tiny_args(script, save_model=True, eval_episodes=3, **EVALUATE.get(script, {})))
    run_dir, model = trained["run_dir"], os.path.join(trained["run_dir"], "model.pt")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # after the loop Ctrl-C stops evaluation
    assert torch.load(model, weights_only=False)["args"]["seed"] == 1 and len(trained["eval_returns"]) == 3
    assert not [f for f in os.listdir(run_dir) if f.endswith(".tmp")]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run folder: {run_dir}"  # the first line (no note: the tiny runs are whole updates)
    (summary,) = [i for i, line in enumerate(lines) if line.startswith("summary: ")]
    steps = trained["global_step"]
    assert re.match(
        rf"summary: step {steps}, {steps} steps in [\d.]+ s \(\d+ SPS\); mean training return ", lines[summary]
    )
    assert f"{np.mean(trained['episodic_returns'][-20:]):.1f} over the last " in lines[summary], lines[summary]
    assert lines[summary + 1 :] == [f"  saved: {model}", f"  tensorboard --logdir {run_dir}"]

    before = {p: os.stat(os.path.join(run_dir, p)).st_mtime_ns for p in os.listdir(run_dir)}
    flags = {"eval_episodes": 3, "progress": False, "cuda": False, **EVALUATE.get(script, {})}
    result = module.main(module.Args(evaluate=model, env_id=OTHER_ENV.get(script, "Acrobot-v1"), **flags))
    out = capsys.readouterr().out
    assert result["eval_returns"] == trained["eval_returns"]
    assert result["run_dir"] != run_dir and f"run folder: {result['run_dir']} (evaluating {model})" in out
    assert f"eval: mean return {np.mean(result['eval_returns']):.1f} over 3 episodes" in out
    logged = scalars(result["run_dir"])
    assert [v for _, v in logged["eval/episodic_return"]] == pytest.approx(result["eval_returns"])
    assert not [k for k in logged if not k.startswith("eval/")]  # nothing trained
    assert before == {p: os.stat(os.path.join(run_dir, p)).st_mtime_ns for p in before}


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
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert lines and re.fullmatch(r"step \d+/\d+ \| \d+ SPS \| ETA \d+s \| return (-|-?[\d.]+)", lines[-1])
    load(script).main(tiny_args(script, progress=False, eval_episodes=0))
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]


# Resume: the three scripts that checkpoint. Each a tiny run whose schedule (epsilon, or the annealed learning
# rate) spans the whole run, so that a schedule stretched over another length shows.
RESUMABLE = {
    "reinforce.py": {"total_timesteps": 2048, "num_envs": 4, "num_steps": 64},  # no schedule to keep
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


def schedule_errors(script: str, module, run_dir: str, args, resumed_at: int, calls: list) -> list:
    """Schedule values after the resume step that differ from the run's own schedule, fixed by its first length
    (args.total_timesteps): epsilon for the DQN scripts (each linear_schedule call of the loop, in calls, and what
    was logged), the annealed learning rate for A2C (which, given a new length, falls linearly from its value at
    the resume to 0 at the new end)."""
    logged = scalars(run_dir)
    errors = []
    if script == "reinforce.py":
        return errors
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
        resumed = [
            (d, t) for start, end, d, t in calls if (start, end) == (args.start_e, args.end_e) and t >= resumed_at
        ]
        assert resumed, "no epsilon computed after the resume"
        errors += [(t, d, explore) for d, t in resumed if d != explore]  # the decay's length: the first run's
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
    calls, real_schedule = [], getattr(module, "linear_schedule", None)

    def schedule(start, end, duration, t):
        calls.append((start, end, duration, t))
        return real_schedule(start, end, duration, t)

    if real_schedule is not None:
        monkeypatch.setattr(module, "linear_schedule", schedule)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        limit["stop_at"] = args.total_timesteps // 2
        first = module.main(args)
        path = os.path.join(first["run_dir"], "checkpoint.pt")
        stopped_at = first["global_step"]
        assert first["signal"] == signal.SIGTERM and stopped_at < args.total_timesteps  # __main__ exits 128 + it
        capsys.readouterr()

        monkeypatch.setattr(sys, "argv", [script, "--resume", path])  # what the command line gave: load_run reads it
        resumed = module.main(module.Args(resume=path, progress=False, cuda=False, eval_episodes=0))
        assert resumed["run_dir"] == first["run_dir"] and resumed["global_step"] == args.total_timesteps
        assert resumed["signal"] is None
        assert f"resume: step {stopped_at} of {args.total_timesteps}" in capsys.readouterr().out
        assert not schedule_errors(script, module, first["run_dir"], args, stopped_at, calls)

        monkeypatch.setattr(sys, "argv", [script, "--resume", path, "--total-timesteps", str(stopped_at)])
        files = {f: os.path.getsize(os.path.join(first["run_dir"], f)) for f in os.listdir(first["run_dir"])}
        with pytest.raises(SystemExit) as at_end:  # nothing to train: the folder stays as it was
            module.main(module.Args(resume=path, total_timesteps=stopped_at, progress=False, cuda=False))
        assert at_end.value.code == 0 and "already the end" in capsys.readouterr().out
        assert {f: os.path.getsize(os.path.join(first["run_dir"], f)) for f in os.listdir(first["run_dir"])} == files

        limit["step"] = 2 * args.total_timesteps
        time.sleep(1)  # TensorBoard reads event files in name order, by the second each was opened: one second apart
        monkeypatch.setattr(sys, "argv", [script, "--resume", path, "--total-timesteps", str(limit["step"])])
        extended = module.main(
            module.Args(
                resume=path, total_timesteps=2 * args.total_timesteps, progress=False, cuda=False, eval_episodes=0
            )
        )
        assert extended["global_step"] == 2 * args.total_timesteps
        assert "changes the run's length" in capsys.readouterr().out
        assert not schedule_errors(script, module, first["run_dir"], args, stopped_at, calls)
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


@pytest.mark.parametrize("script", ["reinforce.py", "dqn_per_her.py"])
def test_resume_goes_by_what_the_command_line_said(script, in_tmp, monkeypatch, capsys):
    """--checkpoint-every 0 given on a resume switches checkpoints off, though 0 is also its default; a flag the
    resumed run keeps as its own (the learning rate) is named in one line, not dropped silently."""
    module = load(script)
    first = module.main(tiny_args(script, **RESUMABLE[script], eval_episodes=0, checkpoint_every=512))
    path, total = os.path.join(first["run_dir"], "checkpoint.pt"), first["global_step"]
    command = [
        "--resume",
        path,
        "--total-timesteps",
        str(2 * total),
        "--checkpoint-every",
        "0",
        "--learning-rate",
        "0.5",
    ]
    monkeypatch.setattr(sys, "argv", [script, *command])
    capsys.readouterr()
    flags = {"total_timesteps": 2 * total, "checkpoint_every": 0, "learning_rate": 0.5}
    resumed = module.main(module.Args(resume=path, progress=False, cuda=False, eval_episodes=0, **flags))
    out = capsys.readouterr().out
    assert resumed["global_step"] == 2 * total and "note: --learning-rate ignored: the saved run keeps its own" in out
    assert torch.load(path, weights_only=False)["global_step"] == total and "saved:" not in out  # no checkpoint now


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
    assert [p.name.split("__")[0] for p in (tmp_path / "runs").iterdir()] == ["mymod-NoRender-v0"]  # no colon in a path
    missing = run_script(script, "--env-id", "nomod:NoRender-v0", cwd=tmp_path)
    assert missing.returncode == 2 and "--env-id" in missing.stderr and "nomod" in missing.stderr


class Categories(gym.Env):
    """Observations of two categories, 3 and 4 values (MultiDiscrete), as POPGym's memory tasks give them."""

    observation_space, action_space = gym.spaces.MultiDiscrete([3, 4]), gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), float(action), False, False, {}


gym.register("Categories-v0", entry_point=Categories, max_episode_steps=20)


SHORT = {
    "reinforce.py": {"total_timesteps": 512, "num_envs": 2, "num_steps": 256},
    "actor_critic_gae.py": {"total_timesteps": 512},
    "dqn_per_her.py": {"her": False, "total_timesteps": 300, "learning_starts": 200, "batch_size": 32},
}


@pytest.mark.parametrize("script", list(SHORT))
def test_discrete_observations_are_one_hot_and_train(script, in_tmp):
    """Discrete (FrozenLake-v1: 16 cells) and MultiDiscrete (3 and 4 values) observations reach the network as
    one-hot float vectors, one 1 per category; a short run on each trains and evaluates."""
    module = load(script)
    for env_id, width, ones in [("FrozenLake-v1", 16, 1), ("Categories-v0", 7, 2)]:
        obs = module.make_envs(env_id, 2).reset(seed=0)[0]
        assert obs.dtype == np.float32 and obs.shape == (2, width) and (obs.sum(1) == ones).all(), (env_id, obs)
        assert set(np.unique(obs)) <= {0.0, 1.0}
        result = module.main(tiny_args(script, env_id=env_id, eval_episodes=1, **SHORT[script]))
        assert result["global_step"] > 0 and len(result["eval_returns"]) == 1


# The plumbing the scripts share is one text, copied into each file (a reader never opens a second file)
PLUMBING = [  # section 8 of every script, in this order
    "fail",
    "check_args",
    "setup_torch",
    "open_run",
    "ProgressReport",
    "catch_stop_signals",
    "checkpoint_due",
    "write_checkpoint",
    "restore",
    "load_run",
    "finish_run",
]
SHARED_BY_SOME = [  # the same job in the scripts that have it
    "linear_schedule",
    "td_target",
    "atari_game",
    "categorical_log_prob",
    "categorical_entropy",
    "gaussian_log_prob",
    "gaussian_entropy",
]


@pytest.mark.parametrize("name", PLUMBING + SHARED_BY_SOME)
def test_shared_helpers_are_one_text_in_every_script_that_has_them(name):
    texts = {s: inspect.getsource(getattr(load(s), name)) for s in ALL if hasattr(load(s), name)}
    if name in PLUMBING:
        assert set(texts) == set(ALL), f"{name} is missing from {sorted(set(ALL) - set(texts))}"
    assert len(texts) >= 2, f"{name} is in {list(texts)} only"
    assert len(set(texts.values())) == 1, f"{name} differs between {list(texts)}: edit it the same way in each"


def test_the_shared_plumbing_closes_every_script_in_one_order():
    """The block of shared helpers is the last of section 8, the same names in the same order in every file, so
    that diffing two scripts shows their algorithms and nothing else."""
    for script in ALL:
        source = (ROOT / script).read_text()
        tree = ast.parse(source)
        names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert names[-len(PLUMBING) :] == PLUMBING, f"{script}: {names[-len(PLUMBING) :]}"
        banners = re.findall(r"^# (\d)\. ", source, re.MULTILINE)
        assert banners == list("12345678"), f"{script} has the banners {banners}"
        shared = len(source[source.index("\ndef fail(") + 1 :].splitlines()) + 2  # and the 2 blank lines before it
        assert shared <= 180, f"{script}: the shared text, __main__ included, is {shared} lines (at most 180)"


FIRST_ESTIMATOR = {  # the first line of the maths each script is about
    "reinforce.py": "def discounted_returns(",
    "actor_critic_gae.py": "def next_state_values(",
    "dqn_atari.py": "def td_target(",
    "dqn_per_her.py": "def td_target(",
}


@pytest.mark.parametrize("script", ALL)
def test_a_reader_meets_the_algorithm_before_the_machinery(script):
    """The estimator or loss within the first 40% of the file, the training loop within the first 60%: the
    networks, targets and main come before the environment, the storage and the plumbing."""
    lines = (ROOT / script).read_text().splitlines()
    first = lambda prefix: next(i for i, line in enumerate(lines) if line.startswith(prefix)) + 1
    assert first(FIRST_ESTIMATOR[script]) <= 0.4 * len(lines), (
        f"{script}: the estimator is at line {first(FIRST_ESTIMATOR[script])} of {len(lines)}"
    )
    assert first("    # LOOP") <= 0.6 * len(lines), (
        f"{script}: the loop starts at line {first('    # LOOP')} of {len(lines)}"
    )
    assert first("def main(") < first("# 6. Environment") < first("# 7. Storage") < first("# 8. Plumbing")


# The user's loop: start a run, find it, stop it, resume it, evaluate what it saved (issue 12)


def cli_flags(fields: dict) -> list:
    """Args fields as a command line: {"num_envs": 4, "her": False} -> ["--num-envs=4", "--no-her"]."""
    flag = lambda k: k.replace("_", "-")
    return [
        (f"--{flag(k)}" if v else f"--no-{flag(k)}") if isinstance(v, bool) else f"--{flag(k)}={v}"
        for k, v in fields.items()
    ]


def wait_for_line(proc, prefix: str, timeout: float) -> list:
    """Lines of proc's stdout up to the first that starts with prefix."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no line starting {prefix!r} in {timeout} s: {lines}")


STOP_FLAGS = {
    "reinforce.py": ["--total-timesteps", "50000000", "--num-steps", "64"],
    "actor_critic_gae.py": ["--total-timesteps", "50000000"],
    "dqn_atari.py": ["--total-timesteps", "1000000", "--buffer-size", "3000", "--learning-starts", "1000"],
    "dqn_per_her.py": ["--total-timesteps", "10000000", "--buffer-size", "5000"],
}


@pytest.mark.parametrize("script", ALL)
def test_ctrl_c_writes_the_checkpoint_and_summary_then_exits_130(script, tmp_path):
    """SIGINT, as Ctrl-C sends it, once training runs: the checkpoint is written first, the summary names it, and
    the exit status is 130 (128 + 2), what shells and schedulers expect of an interrupted program."""
    flags = [*STOP_FLAGS[script], "--no-cuda", "--eval-episodes", "0", "--progress"]  # plain lines: not a tty
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, str(ROOT / script), *flags]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        head = wait_for_line(proc, "step ", 120)  # the loop has started: its first progress line
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    lines = head + out.splitlines()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "A.L.E" not in err  # dqn_atari.py: no emulator banner before the run folder
    (checkpoint,) = tmp_path.glob("runs/*/checkpoint.pt")
    run_dir = str(checkpoint.parent.relative_to(tmp_path))
    assert lines[0] == f"run folder: {run_dir}" or lines[1] == f"run folder: {run_dir}", lines[:2]
    assert any(line.startswith("summary: step ") for line in lines)
    assert f"  saved: {run_dir}/checkpoint.pt" in lines and lines[-1] == f"  tensorboard --logdir {run_dir}"
    assert torch.load(checkpoint, weights_only=False)["global_step"] > 0


@pytest.mark.parametrize("script", ALL)
def test_checkpoint_every_writes_at_each_multiple_and_at_the_end(script, in_tmp, monkeypatch):
    """--checkpoint-every N: a checkpoint each time global_step passes a multiple of N, and one at the end,
    holding the step it was written at."""
    module = load(script)
    steps, written = [], []
    real_update, real_write = module.ProgressReport.update, module.write_checkpoint

    def update(self, step, sps, recent):
        steps.append(step)
        real_update(self, step, sps, recent)

    def write(path, args, name, modules, state):
        written.append(state["global_step"])
        real_write(path, args, name, modules, state)

    monkeypatch.setattr(module.ProgressReport, "update", update)
    monkeypatch.setattr(module, "write_checkpoint", write)
    args = tiny_args(script, eval_episodes=0)
    every = args.total_timesteps // 3 + 1  # not a multiple of the steps of one iteration
    result = module.main(dataclasses.replace(args, checkpoint_every=every))
    end = result["global_step"]
    befores = [2 * steps[0] - steps[1], *steps]  # the first iteration starts at 0
    want = [after for before, after in zip(befores, steps) if after // every > before // every or after == end]
    assert written == want and len(want) >= 3, (written, want)
    assert torch.load(os.path.join(result["run_dir"], "checkpoint.pt"), weights_only=False)["global_step"] == end


@pytest.mark.parametrize("script", ALL)
def test_restore_loads_every_module_the_state_by_name_and_the_random_streams(script, tmp_path):
    """What write_checkpoint saved, restore puts back: each module's parameters (an optimizer's too), the state
    by name (a name the file lacks keeps its new-run value), and python's, numpy's and torch's random streams."""
    module, path = load(script), str(tmp_path / "checkpoint.pt")
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    module.write_checkpoint(path, tiny_args(script), script, {"net": net, "optimizer": optimizer}, {"global_step": 5})
    draws = (random.random(), np.random.random(), torch.rand(1))
    again = torch.nn.Linear(3, 2)
    again_optimizer = torch.optim.Adam(again.parameters())
    state = module.restore(
        torch.load(path, weights_only=False),
        {"net": again, "optimizer": again_optimizer},
        {"global_step": 0, "run_dir": None},
    )
    assert state == {"global_step": 5, "run_dir": None}
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))
    assert again_optimizer.state_dict()["state"][0]["step"] == 1
    assert (random.random(), np.random.random(), torch.rand(1)) == draws


@pytest.mark.parametrize("script", list(RESUMABLE))
def test_evaluate_takes_a_checkpoint_and_resume_refuses_a_model(script, in_tmp, capsys):
    module = load(script)
    args = tiny_args(script, **RESUMABLE[script], save_model=True, checkpoint_every=10**9, eval_episodes=1)
    trained = module.main(args)
    checkpoint = os.path.join(trained["run_dir"], "checkpoint.pt")
    result = module.main(module.Args(evaluate=checkpoint, eval_episodes=1, progress=False, cuda=False))
    assert result["eval_returns"] == trained["eval_returns"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        module.main(module.Args(resume=os.path.join(trained["run_dir"], "model.pt"), progress=False, cuda=False))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "--resume" in err[0] and "model.pt" in err[0], err
    with pytest.raises(SystemExit):
        module.main(module.Args(evaluate=checkpoint, resume=checkpoint, progress=False, cuda=False))
    assert "--evaluate" in capsys.readouterr().err


@pytest.mark.parametrize("script", ALL)
def test_evaluate_refuses_another_scripts_model(script, in_tmp, capsys):
    other = next(s for s in ALL if s != script)
    torch.save({"script": other, "args": {}}, "model.pt")
    with pytest.raises(SystemExit) as exit_info:
        load(script).main(load(script).Args(evaluate="model.pt", progress=False, cuda=False))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: --evaluate: "), err
    assert other in err[0] and f"valid: a model.pt or checkpoint.pt of {script}" in err[0]
    assert not os.path.exists("runs")


ROUNDED = {  # a --total-timesteps that is not a whole number of the loop's iterations, and the steps it runs
    "reinforce.py": ({"total_timesteps": 3000, "num_envs": 4, "num_steps": 128}, 2560),
    "actor_critic_gae.py": ({"total_timesteps": 3000, "num_envs": 4, "num_steps": 8}, 2976),
    "dqn_atari.py": ({**RESUMABLE["dqn_atari.py"], "total_timesteps": 801, "num_envs": 2}, 802),
    "dqn_per_her.py": ({**RESUMABLE["dqn_per_her.py"], "total_timesteps": 1601, "num_envs": 2}, 1602),
}


@pytest.mark.parametrize("script", ALL)
def test_a_run_length_that_is_rounded_says_so(script, in_tmp, capsys):
    flags, steps = ROUNDED[script]
    result = load(script).main(tiny_args(script, **flags, eval_episodes=0))
    out = capsys.readouterr().out
    assert result["global_step"] == steps
    assert f"note: --total-timesteps {flags['total_timesteps']} runs as {steps}, a whole number of " in out


@pytest.mark.parametrize("script", ["reinforce.py", "actor_critic_gae.py", "dqn_per_her.py"])
def test_capture_video_names_every_missing_package_in_one_line(script, in_tmp, monkeypatch, capsys):
    """Neither moviepy nor pygame (classic control's renderer): one line names both, not one per try."""
    module = load(script)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        module.importlib.util, "find_spec", lambda n, *a: None if n in ("moviepy", "pygame") else real(n, *a)
    )
    monkeypatch.setitem(sys.modules, "pygame", None)  # import pygame fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "pygame.gfxdraw", None)
    args = tiny_args(script, capture_video=True, eval_episodes=1)
    with pytest.raises(SystemExit) as exit_info:
        module.main(dataclasses.replace(args, env_id="CartPole-v1", her=False) if script == "dqn_per_her.py" else args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("error: --capture-video: ") and "pip install moviepy pygame" in err[0], err


@pytest.mark.parametrize("script", ["reinforce.py", "dqn_atari.py"])
@pytest.mark.skipif(
    not (importlib.util.find_spec("moviepy") and importlib.util.find_spec("pygame")), reason="no moviepy, pygame"
)
def test_capture_video_prints_no_stray_sdl_errors(script, tmp_path, monkeypatch):
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    tiny = cli_flags(SCRIPTS[script]["tiny"])
    result = run_script(script, *tiny, "--capture-video", "--eval-episodes", "1", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "error" not in result.stderr.lower(), result.stderr
    assert list(tmp_path.glob("runs/*/videos/*.mp4"))


@pytest.mark.parametrize("script", ALL)
def test_run_folders_are_flat_for_namespaced_ids(script, in_tmp):
    module = load(script)
    writer = module.open_run(module.Args(env_id="ALE/Breakout-v5", exp_name="exp", seed=3))
    writer.close()
    assert re.fullmatch(r"runs/ALE-Breakout-v5__exp__3__\d{10}", writer.log_dir), writer.log_dir
    assert os.listdir("runs") == [os.path.basename(writer.log_dir)]


def test_an_atari_run_with_a_namespaced_id_is_one_folder(in_tmp):
    args = tiny_args("actor_critic_gae.py", env_id="ALE/Pong-v5", num_envs=2, num_steps=5, total_timesteps=10)
    result = load("actor_critic_gae.py").main(dataclasses.replace(args, eval_episodes=0))
    assert os.listdir("runs") == [os.path.basename(result["run_dir"])]
    assert result["run_dir"].startswith("runs/ALE-Pong-v5__actor_critic_gae__1__")


@pytest.mark.parametrize("script", ["reinforce.py", "actor_critic_gae.py", "dqn_per_her.py"])
def test_env_id_typos_get_gymnasiums_suggestion_in_one_line(script, in_tmp, capsys):
    module = load(script)
    with pytest.raises(SystemExit) as exit_info:
        module.main(tiny_args(script, env_id="CartPol-v1", **({"her": False} if script == "dqn_per_her.py" else {})))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: --env-id: "), err
    assert "Did you mean: `CartPole`?" in err[0], err  # gymnasium's own suggestion, passed on
    assert err[0].endswith("A package's id: module:EnvId"), err  # as popgym:popgym-RepeatPreviousEasy-v0


@pytest.mark.parametrize("script", ALL)
def test_help_reads_as_prose_one_line_per_docstring(script, tmp_path):
    """tyro keeps the line breaks of a docstring written over several source lines, which --help then shows as
    ragged lines: every flag's docstring is one line, shown whole on one line of a wide --help."""
    source = (ROOT / script).read_text()
    docs = dict(re.findall(r'^    (\w+): [^\n]+\n    """(.+?)"""', source, re.MULTILINE | re.DOTALL))
    flags = [f.name for f in dataclasses.fields(load(script).Args) if f.init]
    env = dict(os.environ, COLUMNS="1000")
    command = [sys.executable, str(ROOT / script), "--help"]
    out = subprocess.run(command, check=False, capture_output=True, text=True, env=env).stdout
    for name in flags:
        assert "\n" not in docs[name], f"the docstring of {name} spans several lines"
        assert any(docs[name] in line for line in out.splitlines()), f"{name}'s docstring is not one line of --help"
    assert "--resume PATH" in out and "--evaluate PATH" in out and "{None}" not in out


@pytest.mark.parametrize("script", ALL)
def test_track_without_wandb_says_how_to_install_it(script, in_tmp, monkeypatch, capsys):
    module = load(script)
    real = importlib.util.find_spec
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a))
    with pytest.raises(SystemExit) as exit_info:
        module.main(tiny_args(script, track=True))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: --track: "), err
    assert "pip install wandb" in err[0] and "WANDB_MODE=offline" in err[0]
    assert not os.path.exists("runs")


@pytest.mark.parametrize("script", ["reinforce.py", "actor_critic_gae.py"])  # open_run is one text in all
@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb (optional) not installed")
def test_track_sends_the_tensorboard_scalars_to_wandb_offline(script, tmp_path):
    tiny = cli_flags(SCRIPTS[script]["tiny"])
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_SILENT="true")
    command = [sys.executable, str(ROOT / script), *tiny, "--track", "--no-progress", "--no-cuda", "--eval-episodes=1"]
    result = subprocess.run(command, check=False, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")  # ./wandb, as CleanRL's
    assert not list(tmp_path.glob("runs/**/wandb"))  # outside runs/: TensorBoard shows each curve once
    data = run.read_bytes()
    for key in SCRIPTS[script]["keys"] + ["eval/episodic_return"]:
        assert key.encode() in data, f"{key} not sent to wandb"
