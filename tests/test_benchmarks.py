"""The benchmarks' own machinery, and the README figures that come from the recorded benchmarks.

- Every README figure matches a recorded result: each table copied from a result file is found in it verbatim,
  and the figures the prose states are computed here from benchmarks/results/ and must appear as written. A
  README number that drifts from its record fails here.
- Recorded results change only on purpose: a benchmark writes to the git-ignored benchmarks/runs/ unless it is
  given --record.
- Plots a reader understands alone: step ticks as 500k and 1M, titles in words, the threshold in the legend, the
  step budget in Figure 1's legend, a threshold column in the tables.
"""

import csv
import hashlib
import importlib
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))
run = importlib.import_module("run")  # benchmarks/run.py
report = importlib.import_module("report")  # benchmarks/report.py
her_figure1 = importlib.import_module("her_figure1")  # benchmarks/her_figure1.py

READMES = {"README.md": (ROOT / "README.md").read_text(), "benchmarks/README.md": (BENCH / "README.md").read_text()}
WRITERS = ["report.py", "her_figure1.py", "sps.py", "per_cost.py", "dqn_throughput.py", "mutants.py"]
WRITERS += ["same_results.py", "readme_runs.py"]


# ---------------------------------------------------------------------------------------------------------------
# Reading the records


def tables(text: str) -> list[list[str]]:
    """The markdown tables of a text, each as its lines (header, separator, rows)."""
    blocks, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    return blocks


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def rows(path: Path) -> list[dict]:
    """The first table of a recorded markdown file, one dict per row."""
    head, _, *body = tables(path.read_text())[0]
    return [dict(zip(cells(head), cells(line), strict=True)) for line in body]


def row(name: str, file: str = "results.md", **match) -> dict:
    """The one row of results/{name}/{file} whose cells match (keyword: header with spaces as underscores)."""
    found = [r for r in rows(RESULTS / name / file) if all(r[k.replace("_", " ")] == v for k, v in match.items())]
    assert len(found) == 1, f"{name}/{file}: {len(found)} rows match {match}"
    return found[0]


def sps(name: str) -> tuple[int, int]:
    """(training SPS, random-action SPS), the medians of results/sps/{name}.md."""
    r = rows(RESULTS / "sps" / f"{name}.md")[0]
    return int(r["training SPS (median)"]), int(r["random-action SPS (median)"])


def last_point(name: str, csv_name: str) -> tuple[float, float]:
    """(step, mean) at the end of a recorded curve."""
    data = np.loadtxt(RESULTS / name / csv_name, delimiter=",", skiprows=1, ndmin=2)
    return float(data[-1, 0]), float(data[-1, 1])


def runs_csv(name: str) -> list[dict]:
    with open(RESULTS / name / "runs.csv") as f:
        return list(csv.DictReader(f))


def k(steps: float) -> str:
    """Steps as the README writes them: 171k."""
    return f"{round(steps / 1000)}k"


def mega(steps: float) -> str:
    """Steps in millions, one decimal: 3.9M."""
    return f"{steps / 1e6:.1f}M"


def table_steps(cell: str) -> float:
    """'3894k' or '9079' (a table's steps) as a number."""
    return float(cell[:-1]) * 1000 if cell.endswith("k") else float(cell)


def to_threshold(r: dict) -> tuple[str, str, bool]:
    """(median, worst, every seed reached it) from a row's steps-to-threshold cell: '80k / 85k (5/5)'."""
    median, worst, reached, seeds = re.fullmatch(
        r"(\S+) / (\S+) \((\d+)/(\d+)\)", r["steps to threshold, median / worst (seeds reached)"]
    ).groups()
    return median, worst, reached == seeds


def readme_figures() -> list[tuple[str, str]]:
    """(README, text) for each figure the READMEs' prose states, written here as the README writes it but with the
    numbers computed from the recorded results. A drifted number, in the README or in a record, makes the text
    differ."""
    figures = []

    # REINFORCE: steps to 475 and the lowest 20-episode mean after it, training and random-action SPS
    rf = row("reinforce", env_id="CartPole-v1", variant="baseline")
    median, worst, _ = to_threshold(rf)
    train, random = sps("reinforce__CartPole-v1")
    figures += [
        f"Default flags solve CartPole-v1 in {median} steps (median seed; worst {worst})",
        f"(no 20-episode mean below {rf['min after reaching']} afterwards)",
        (
            f"Training runs at {train} environment steps per second on 2 CPU cores, against {random} for the same "
            "vector environment with random actions"
        ),
        (
            f"CartPole solved in {median} steps (median of 5 seeds): {round(table_steps(median) / train)} s at the "
            f"{train:,} steps/s recorded on 2 idle CPU cores"
        ),
        f"200,000 steps: {round(200_000 / train)} s at the {train:,} steps a second recorded on 2 idle CPU cores",
        f"reached 475 (of 500) after {median} steps in the recorded median of 5 seeds ({worst} the worst)",
    ]

    # A2C: steps to 475, Acrobot's final score, SPS; the Atari runs on one H100
    a2c = row("a2c", env_id="CartPole-v1")
    median, worst, every = to_threshold(a2c)
    acrobot_mean, acrobot_std = map(float, row("a2c", env_id="Acrobot-v1")["final score (last 100 ep.)"].split(" ± "))
    train, _ = sps("actor_critic_gae__CartPole-v1")
    figures += [
        (
            f"{'Every seed solves' if every else 'Not every seed solves'} CartPole-v1 (median {median} steps, worst "
            f"{worst})"
        ),
        f"Acrobot-v1 ends at {round(acrobot_mean)} ± {round(acrobot_std)}",
        f"Training ran at {train:,} steps per second on 2 idle CPU cores",
        (
            f"CartPole solved in {median} steps (median of 5 seeds): {round(table_steps(median) / train)} s at the "
            f"{train:,} steps/s recorded on 2 idle CPU cores"
        ),
    ]
    pong, breakout = (row("a2c_atari_gpu", env_id=f"{game}NoFrameskip-v4") for game in ("Pong", "Breakout"))
    pong_at, breakout_at = (mega(table_steps(to_threshold(r)[0])) for r in (pong, breakout))
    pong_end = last_point("a2c_atari_gpu", "actor_critic_gae__PongNoFrameskip-v4__default.csv")[0]
    breakout_end = last_point("a2c_atari_gpu", "actor_critic_gae__BreakoutNoFrameskip-v4__default.csv")[0]
    figures += [
        f"Pong reached +{pong['threshold']} (20-game mean) after {pong_at} agent steps",
        f"Breakout {breakout['threshold']} after {breakout_at}",
        f"stopped at {mega(pong_end)} and {mega(breakout_end)} steps",
        f"Pong +{pong['threshold']} after {pong_at} agent steps",
    ]

    # DQN from pixels: the replay's memory, the loop against its parts, the short CPU runs against random play
    memory = json.loads((RESULTS / "dqn_throughput" / "memory.json").read_text())
    cpu = json.loads((RESULTS / "dqn_throughput" / "cpu.json").read_text())["median"]
    cpu2 = json.loads((RESULTS / "dqn_throughput" / "cpu_threads2.json").read_text())["median"]
    random_breakout = row("dqn_atari_random", env_id="BreakoutNoFrameskip-v4")["final score (last 100 ep.)"]
    random_pong = row("dqn_atari_random", env_id="PongNoFrameskip-v4")["final score (last 100 ep.)"]
    breakout_final = row("dqn_atari_cpu", env_id="BreakoutNoFrameskip-v4")["final score (last 100 ep.)"]
    breakout_end = last_point("dqn_atari_cpu", "dqn_atari__BreakoutNoFrameskip-v4__short.csv")[0]
    pong_cpu = row("dqn_pong_cpu", env_id="PongNoFrameskip-v4")  # the laptop preset, 1M steps
    pong_cpu_at, hours = to_threshold(pong_cpu)[0], float(pong_cpu["wall s"]) / 3600
    figures += [
        (
            f"with 1,000,000 transitions the whole training process peaks at {memory['peak_rss_gb_training']:.2f} GB "
            f"(the frames alone are {memory['frames_gb']:.2f} GB"
        ),
        (
            f"a checkpoint with the full replay is {memory['checkpoint_gb']:.2f} GB, written atomically in "
            f"{round(memory['checkpoint_write_s'])} s"
        ),
        f"1M transitions in {memory['peak_rss_gb_training']:.1f} GB for the whole process",
        (
            f"On 2 CPU cores training runs at about {round(cpu['loop_sps'], -1):.0f} steps per second, "
            f"{round(100 * cpu['ratio'])}% of what its measured parts allow (a {round(cpu['grad'] * 1000)} ms gradient "
            f"step every 4 steps is most of the {round(1000 / cpu['loop_sps'])} ms per step)"
        ),
        f"and at about {round(cpu2['loop_sps'], -1):.0f} with `--torch-threads 2`",
        (
            f"climbs from random play ({random_breakout.split(' ± ')[0]}) to {breakout_final.split(' ± ')[0]} over the "
            f"last 100 games by {k(breakout_end)} steps"
        ),
        (
            f"reached +{pong_cpu['threshold']} after {pong_cpu_at} agent steps and the 1M-step run ended at "
            f"{pong_cpu['final score (last 100 ep.)'].split(' ± ')[0]} over its last 100 games (random play "
            f"{random_pong.split(' ± ')[0]}). It took {hours:.1f} hours at {pong_cpu['SPS']} steps per second"
        ),
        (
            f"Pong +{pong_cpu['threshold']} after {pong_cpu_at} agent steps with the laptop preset; its 1M-step run "
            f"took {hours:.1f} hours on 2 CPU cores (about {round(cpu['loop_sps'], -1):.0f} steps/s"
        ),
    ]

    # DQN + HER, Figure 1: who reached the threshold at which n, the 50-bit steps, plain DQN's success rate
    fig1 = runs_csv("her_fig1")
    threshold = re.search(r"steps to (\S+) per seed", tables((RESULTS / "her_fig1" / "figure1.md").read_text())[0][0])
    her = [r for r in fig1 if r["method"] == "her"]
    solved = sorted(
        {int(r["n_bits"]) for r in her if all(x["steps_to_threshold"] for x in her if x["n_bits"] == r["n_bits"])}
    )
    at_50 = [int(r["steps_to_threshold"]) for r in her if r["n_bits"] == "50"]
    lowest = min(float(r["lowest_window_after"]) for r in her)
    dqn = [r for r in fig1 if r["method"] == "dqn"]
    dqn_n = sorted({int(r["n_bits"]) for r in dqn})
    dqn_best = max(np.mean([float(x["final_success"]) for x in dqn if x["n_bits"] == str(n)]) for n in dqn_n)
    budget = {n: k(max(int(r["total_timesteps"]) for r in dqn if r["n_bits"] == str(n))) for n in dqn_n}
    from_30 = budget[30] if len({budget[n] for n in dqn_n if n >= 30}) == 1 else "(budgets differ from 30 bits on)"
    sps_50 = float(row("her_stability", variant="clip-n50")["SPS"])  # 50 bits, default flags, one core
    minutes_50 = math.ceil(max(at_50) / sps_50 / 60)
    figures += [
        (
            f"DQN + HER reaches a success rate of {threshold.group(1)} on bit flipping with "
            f"{', '.join(map(str, solved[:-1]))} and {solved[-1]} bits (50 bits at {k(min(at_50))} to {k(max(at_50))} "
            "steps"
        ),
        f"(no 100-episode window below {lowest:.2f} afterwards)",
        (
            f"plain DQN (`--no-her`) stays at a success rate of {dqn_best:.2f} at every n from {dqn_n[0]} to "
            f"{dqn_n[-1]} bits in the budgets it had ({budget[10]} steps at 10 bits, {budget[20]} at 20, {from_30} "
            "from 30 bits on)"
        ),
        f"50 bits at {k(min(at_50))} to {k(max(at_50))} steps, under {minutes_50} minutes)",
        f"50 bits solved in about {round(max(at_50), -4) // 1000}k steps, under {minutes_50} minutes on one CPU core",
        f"where plain DQN, in the budgets given here, fails at every n from {dqn_n[0]} to {dqn_n[-1]}",
    ]
    figures = [("README.md", f) for f in figures]

    # the mutation check and PER's cost, as benchmarks/README.md and the README state them
    mutants = json.loads((RESULTS / "mutants" / "results.json").read_text())
    per_cost = json.loads((RESULTS / "per_cost" / "per_cost.json").read_text())["median"]
    figures += [
        ("README.md", f"`python benchmarks/mutants.py` plants {len(mutants['mutants'])} one-line bugs"),
        ("benchmarks/README.md", f"Result: **{mutants['summary']}**"),
        ("benchmarks/README.md", f"PER costs **{100 * per_cost['per_over_uniform']:.1f}%** more per update"),
    ]

    # partial observability: the three variants on CartPoleNoVelocity-v1, and the recurrent path's throughput
    pomdp = {v: row("a2c_pomdp", variant=v) for v in ("single", "stacked", "recurrent")}
    median, worst, every = to_threshold(pomdp["recurrent"])
    steps_cell = "steps to threshold, median / worst (seeds reached)"
    assert every and all(pomdp[v][steps_cell].endswith("(0/5)") for v in ("single", "stacked"))  # "not on any"
    best = {}  # the highest 20-episode mean of any seed on the recorded curve
    for v in ("single", "stacked"):
        data = np.genfromtxt(RESULTS / "a2c_pomdp" / f"actor_critic_gae__CartPoleNoVelocity-v1__{v}.csv", delimiter=",")
        best[v] = round(float(np.nanmax(data[1:, 5:])))
    against = rows(RESULTS / "sps" / "actor_critic_gae__CartPoleNoVelocity-v1__against__recurrent=true.md")[0]
    ratio = against["ratio to training"]
    final = {v: pomdp[v]["final score (last 100 ep.)"] for v in pomdp}
    figures += [
        ("README.md", f"`--recurrent` reaches 475 on every seed (median {median} steps, worst {worst})"),
        ("README.md", f"(final score {final['recurrent']})"),
        ("benchmarks/README.md", f"on every seed within 500k steps (median {median} steps, worst {worst})"),
        (
            "benchmarks/README.md",
            f"(final score {final['single']}; on the recorded curves no seed gets above {best['single']})",
        ),
        ("benchmarks/README.md", f"(on the recorded curves its best seed gets to {best['stacked']})"),
        ("benchmarks/README.md", f"as low as {pomdp['recurrent']['min after reaching']} on some seed"),
        ("benchmarks/README.md", f"the final score is {final['recurrent']}"),
        ("benchmarks/README.md", f"The recurrent path trains at {ratio} of the feedforward path's speed"),
    ]
    return figures


def prose(text: str) -> str:
    """The text with line breaks as spaces, so that a figure is found however its paragraph is wrapped."""
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------------------------
# Every README figure matches a recorded result


RECORDED = {
    path: path.read_text()
    for pattern in ("*/results.md", "*/figure1.md", "sps/*.md")
    for path in sorted(RESULTS.glob(pattern))
    if path.parent.name != "mutants"
}
RECORDED_HEADS = {block[0] for text in RECORDED.values() for block in tables(text)}


@pytest.mark.parametrize("readme", list(READMES))
def test_every_readme_table_of_a_recorded_result_is_a_verbatim_copy_of_it(readme):
    copies = [block for block in tables(READMES[readme]) if block[0] in RECORDED_HEADS]
    assert len(copies) >= {"README.md": 2, "benchmarks/README.md": 20}[readme], "the tables are no longer found"
    for block in copies:
        if any("\n".join(block) in text for text in RECORDED.values()):
            continue
        drifted = next(line for line in block[2:] if not any(line in text for text in RECORDED.values()))
        pytest.fail(f"{readme}: this row is in no recorded result in benchmarks/results/: {drifted}")


@pytest.mark.parametrize("readme, figure", readme_figures())
def test_every_figure_the_readme_states_is_the_recorded_one(readme, figure):
    assert figure in prose(READMES[readme]), f"{readme} does not say, as the record does: {figure}"


@pytest.mark.parametrize("readme", list(READMES))
def test_every_plot_the_readme_shows_is_committed(readme):
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", READMES[readme])
    assert images
    base = (ROOT / readme).parent
    assert [i for i in images if not (base / i).is_file()] == []


def test_every_recorded_table_names_the_threshold_of_each_row():
    for path in sorted(RESULTS.glob("*/results.md")):
        if path.parent.name == "mutants":
            continue
        line = re.search(r"^Thresholds \(.*?\): (.+)\.$", path.read_text(), re.MULTILINE).group(1)
        thresholds = {} if line == "none" else dict(t.rsplit(" ", 1) for t in line.split(", "))
        for r in rows(path):
            assert r["threshold"] == thresholds.get(r["env id"], "-"), f"{path}: {r}"


# ---------------------------------------------------------------------------------------------------------------
# A benchmark writes to benchmarks/runs/ unless given --record


def test_output_folder_is_the_scratch_folder_unless_recording(monkeypatch, tmp_path):
    monkeypatch.setattr(run, "ROOT", tmp_path)
    assert run.output_folder("x", record=False) == tmp_path / "benchmarks" / "runs" / "x"
    assert not (tmp_path / "benchmarks" / "results").exists()
    assert run.output_folder("x", record=True) == tmp_path / "benchmarks" / "results" / "x"
    assert (tmp_path / "benchmarks" / "results" / "x").is_dir()
    assert "benchmarks/runs/" in (ROOT / ".gitignore").read_text().splitlines()  # scratch is never committed


@pytest.mark.parametrize("script", WRITERS)
def test_every_benchmark_that_writes_a_result_takes_record_in_the_same_words(script):
    source = (BENCH / script).read_text()
    assert 'add_argument("--record", action="store_true", help=RECORD_HELP' in source
    assert "output_folder(" in source and "say_wrote(" in source
    assert '"results"' not in source, "write through run.output_folder, never to benchmarks/results directly"


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def bench_copy(tmp_path):
    """A repository in miniature: benchmarks/*.py and two recorded results, to run the scripts on."""
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    for script in BENCH.glob("*.py"):
        shutil.copy2(script, tmp_path / "benchmarks" / script.name)
    for name in ("a2c", "her_fig1"):
        shutil.copytree(RESULTS / name, tmp_path / "benchmarks" / "results" / name)
    return tmp_path


def run_bench(root: Path, script: str, *flags: str) -> str:
    out = subprocess.run(
        check=False,
        args=[sys.executable, str(root / "benchmarks" / script), *flags],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize(
    "script, name, files",
    [("report.py", "a2c", ["curves.png", "results.md"]), ("her_figure1.py", "her_fig1", ["figure1.png", "figure1.md"])],
)
def test_replot_writes_the_scratch_folder_and_leaves_the_recorded_result_byte_for_byte(bench_copy, script, name, files):
    results = bench_copy / "benchmarks" / "results"
    before = tree_digest(results)
    stdout = run_bench(bench_copy, script, "--name", name, "--replot")
    assert tree_digest(results) == before
    scratch = bench_copy / "benchmarks" / "runs" / name
    assert all((scratch / f).stat().st_size > 0 for f in files)
    assert f"wrote benchmarks/runs/{name}/" in stdout and "--record" in stdout

    # with --record the recorded result is rewritten: the same text (the table in today's columns, the numbers
    # as recorded), the plot drawn anew
    recorded_md = (results / name / files[1]).read_text()
    (results / name / files[0]).unlink()
    stdout = run_bench(bench_copy, script, "--name", name, "--replot", "--record")
    assert f"wrote benchmarks/results/{name}/" in stdout
    assert (results / name / files[0]).stat().st_size > 0

    def kept(text):
        return [line for line in text.splitlines() if not line.startswith(report.REDRAWN)]

    assert kept((results / name / files[1]).read_text()) == kept(recorded_md)


def test_a_run_continued_with_resume_reports_the_wall_time_and_sps_of_all_its_legs(bench_copy):
    # two legs, as a run stopped by SIGTERM and continued with --resume leaves them: one events file each,
    # 100 s and 50 s long; the manifest holds only the first leg (returncode 143, its own wall time)
    from torch.utils.tensorboard import SummaryWriter

    src = bench_copy / "benchmarks" / "runs" / "fake"
    run_dir = src / "runs" / "Fake-v0__x__1__1"
    for leg, (first, last, seconds) in enumerate([(0, 1000, 100.0), (1000, 1600, 50.0)]):
        writer = SummaryWriter(str(run_dir), filename_suffix=f".leg{leg}")
        start = time.time()  # about when the writer wrote its first event
        for step in range(first + 100, last + 1, 100):
            walltime = start + seconds * (step - first) / (last - first)
            writer.add_scalar("charts/episodic_return", step / 100, step, walltime=walltime)
            writer.add_scalar("charts/SPS", 10.0, step, walltime=walltime)
        writer.close()
    meta = {"machine": "test, 2 cores", "commit": "abc", "jobs_at_once": 1, "threads_per_job": 1, "started": "now"}
    (src / "meta.json").write_text(json.dumps(meta | {"command": "python benchmarks/run.py --name fake"}))
    job = {"script": "dqn_atari.py", "env_id": "Fake-v0", "seed": 1, "variant": "x", "command": []}
    job |= {"returncode": 143, "wall_s": 100.0, "peak_rss_mb": 1.0, "run_dir": str(run_dir), "log": "x.log"}
    (src / "manifest.jsonl").write_text(json.dumps(job) + "\n")

    stdout = run_bench(bench_copy, "report.py", "--name", "fake")
    row = dict(
        zip(report.HEAD, cells(next(line for line in stdout.splitlines() if line.startswith("| dqn"))), strict=True)
    )
    assert float(row["wall s"]) == pytest.approx(150, abs=2)  # both legs, not the manifest's first
    assert float(row["SPS"]) == pytest.approx(1600 / 150, abs=0.6)
    assert "Continued with --resume after a signal: Fake-v0 seed 1 in 2 legs" in stdout
    assert "Stopped by a signal" not in stdout


FAKE_SCRIPT = """
import dataclasses

@dataclasses.dataclass
class Args:
    env_id: str = "Fake-v0"
    total_timesteps: int = 8
    seed: int = 1
    eval_episodes: int = 5
    progress: bool = True
    num_envs: int = 2
    cuda: bool = False

class Space:
    def seed(self, seed):
        pass

    def sample(self):
        return [0, 0]

class Envs:
    action_space = Space()

    def reset(self, seed=None):
        return None, {}

    def step(self, actions):
        return None, [0, 0], [False, False], [False, False], {}

    def close(self):
        pass

def make_envs(env_id, num_envs):
    return Envs()

def main(args):
    return {"sps": 1000.0}
"""


def test_sps_writes_the_scratch_folder_unless_recording(monkeypatch, tmp_path, capsys):
    """benchmarks/sps.py's own main, on a stand-in script (a real training run is not what is tested here)."""
    sps_module = importlib.import_module("sps")
    (tmp_path / "fake_sps_script.py").write_text(FAKE_SCRIPT)
    monkeypatch.setattr(run, "ROOT", tmp_path)
    monkeypatch.setattr(sps_module, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    for flags in ([], ["--record"]):
        monkeypatch.setattr(
            sys,
            "argv",
            [
                "sps.py",
                "--script",
                "fake_sps_script.py",
                "--env-id",
                "Fake-v0",
                "--steps",
                "8",
                "--repeats",
                "1",
                *flags,
            ],
        )
        sps_module.main()
        folder = "results" if flags else "runs"
        assert (tmp_path / "benchmarks" / folder / "sps" / "fake_sps_script__Fake-v0.md").is_file()
        assert f"wrote benchmarks/{folder}/sps/: fake_sps_script__Fake-v0.md" in capsys.readouterr().out
        if not flags:
            assert not (tmp_path / "benchmarks" / "results").exists()


# ---------------------------------------------------------------------------------------------------------------
# Plots a reader understands alone


def test_step_ticks_read_as_500k_and_1m():
    ticks = [0, 500, 2_500, 10_000, 500_000, 1_000_000, 1_500_000, 10_000_000]
    assert [report.steps_tick(x) for x in ticks] == ["0", "500", "2.5k", "10k", "500k", "1M", "1.5M", "10M"]


def test_titles_name_the_algorithm_the_file_the_env_ids_and_the_machine_in_words():
    cpu, gpu = "Intel(R) Xeon(R) Processor, 2 cores, 24 GiB, no GPU", "AMD EPYC, 16 cores, 126 GiB, GPU NVIDIA H100"
    command = "python benchmarks/run.py --name x --scripts dqn_per_her.py --extra '--no-her --total-timesteps 30000'"
    assert report.plot_title(["dqn_atari.py"], ["BreakoutNoFrameskip-v4"], cpu, "") == (
        "DQN (dqn_atari.py) on BreakoutNoFrameskip-v4, 2 CPU cores"
    )
    assert report.plot_title(["actor_critic_gae.py"], ["PongNoFrameskip-v4", "BreakoutNoFrameskip-v4"], gpu, "") == (
        "A2C with GAE (actor_critic_gae.py) on PongNoFrameskip-v4 and BreakoutNoFrameskip-v4, one NVIDIA H100 GPU"
    )
    assert report.plot_title(["dqn_per_her.py"], ["CartPole-v1"], cpu, command).startswith("DQN (dqn_per_her.py)")


def test_the_curves_plot_puts_the_threshold_in_the_legend_and_reads_its_steps(tmp_path):
    steps = np.linspace(0, 1_000_000, 50)
    curves = {("reinforce.py", "CartPole-v1", "baseline"): (steps, steps / 2000, steps / 2500, steps / 1800, 5)}
    title = report.plot_title(["reinforce.py"], ["CartPole-v1"], "AMD EPYC, 2 cores, 24 GiB, no GPU", "")
    fig = report.plot_curves(curves, {"CartPole-v1": 475.0}, "charts/episodic_return", 20, title, tmp_path / "c.png")
    ax = fig.axes[0]
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["baseline", "threshold 475"]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert "1M" in ticks and all(re.fullmatch(r"-?(0|\d+(\.\d+)?[kM])", t) for t in ticks), ticks
    assert fig._suptitle.get_text().startswith("REINFORCE (reinforce.py) on CartPole-v1, 2 CPU cores\n")
    assert "5 seeds" in fig._suptitle.get_text() and (tmp_path / "c.png").stat().st_size > 0
    plt.close(fig)


def test_figure1_states_the_steps_each_point_had(tmp_path):
    table = {
        ("her", 10, 10_000): [{"seed": 1, "final": 1.0}, {"seed": 2, "final": 0.9}],
        ("her", 50, 120_000): [{"seed": 1, "final": 1.0}, {"seed": 2, "final": 1.0}],
        ("dqn", 10, 40_000): [{"seed": 1, "final": 0.0}, {"seed": 2, "final": 0.0}],
        ("dqn", 50, 40_000): [{"seed": 1, "final": 0.0}, {"seed": 2, "final": 0.0}],
    }
    fig = her_figure1.plot_figure1(table, ["BitFlip-v0"], "AMD EPYC, 2 cores, 24 GiB, no GPU", 100, tmp_path / "f.png")
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["DQN + HER: 10k, 120k steps", "DQN: 40k steps"]
    assert "steps per run" in legend.get_title().get_text()
    assert "Bit flipping" in fig.axes[0].get_title() and "2 seeds" in fig.axes[0].get_title()
    plt.close(fig)
