"""Turn a benchmark run (benchmarks/runs/{name}/) into CSV curves, a PNG plot and a markdown table.

Reads each job's TensorBoard events with tensorboard's own reader. For every (script, env id, variant):
- a CSV curve: the `--window`-episode moving mean of charts/episodic_return (or --tag) of each seed, interpolated on a
  common grid of environment steps; columns step, mean, std, min, max, then one per seed;
- one PNG with a panel per env id, each variant as its mean with a min-max band over seeds, and the threshold;
- a table row: final score (mean +- std over seeds of each seed's last 100 training episodes), the threshold of
  its env id, steps until the moving mean first reaches it (median over seeds, worst seed, how many got there), the
  lowest moving mean after reaching it, SPS, wall time and peak memory (medians over seeds; a run continued with
  --resume after a signal: SPS and wall time over all its legs).
The table ends with the machine, commit and commands. Output: the grid's own (git-ignored) folder
benchmarks/runs/{name}/, or with --record benchmarks/results/{name}/, the recorded result the READMEs quote.

--replot redraws the plot of a recorded result from the CSVs in benchmarks/results/{name}/ (the event files are
not committed), with the thresholds, tag and window of the report command that made it, and writes its
results.md with the table in today's columns; no number changes.

    python benchmarks/report.py --name reinforce --threshold CartPole-v1=475 Acrobot-v1=-100 --record
    python benchmarks/report.py --name reinforce --replot --record
"""

import argparse
import json
import re
import shlex
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter
from run import RECORD_HELP, ROOT, output_folder, recorded, say_wrote  # benchmarks/run.py

ALGORITHMS = {
    "reinforce.py": "REINFORCE",
    "actor_critic_gae.py": "A2C with GAE",
    "dqn_atari.py": "DQN",
    "dqn_per_her.py": "DQN + HER",
}
HEAD = [
    "script",
    "env id",
    "variant",
    "seeds",
    "final score (last 100 ep.)",
    "threshold",
    "steps to threshold, median / worst (seeds reached)",
    "min after reaching",
    "SPS",
    "wall s",
    "peak RSS MB",
]
REDRAWN = "Redrawn from this folder's CSVs (the plot, and the table in today's columns; no number changed)"


def read_scalars(run_dir: str, tags: list[str]) -> dict[str, np.ndarray]:
    """{tag: array of (step, value)} for the tags present in one run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # slow; not for --replot

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    present = acc.Tags()["scalars"]
    return {t: np.array([(e.step, e.value) for e in acc.Scalars(t)]) for t in tags if t in present}


def legs(run_dir: str) -> list[float]:
    """Seconds of each leg of a run: a run continued with --resume opens one events file per leg, and a leg's span
    runs from its file's first event (the writer's creation) to its last."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    spans = []
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        times = [event.wall_time for event in EventFileLoader(str(path)).Load()]
        spans.append(times[-1] - times[0])
    return spans


def moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each index (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    return (sums[idx] - sums[np.maximum(idx - window, 0)]) / np.minimum(idx, window)


def steps_to_threshold(steps: np.ndarray, smooth: np.ndarray, threshold: float, window: int):
    """First step at which a full window's mean reaches the threshold, or None."""
    hits = np.flatnonzero(smooth[window - 1 :] >= threshold)
    return int(steps[window - 1 + hits[0]]) if len(hits) else None


def fmt_steps(x) -> str:
    return "-" if x is None else f"{x / 1000:.0f}k" if x >= 10_000 else str(x)


def steps_tick(x: float, _pos=None) -> str:
    """A step count as an axis reads it: 0, 2.5k, 500k, 1M, 1.5M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{round(x / size, 3):g}{suffix}"
    return f"{x:g}"


def words(items: list[str]) -> str:
    """a; a and b; a, b and c."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def hardware(machine: str) -> str:
    """What a run ran on, from run.machine()'s line: "2 CPU cores" or "one NVIDIA H100 80GB HBM3 GPU"."""
    gpu, cores = re.search(r", GPU (.+)$", machine), re.search(r"(\d+) cores", machine)
    return f"one {gpu.group(1)} GPU" if gpu else f"{cores.group(1)} CPU cores" if cores else machine


def plot_title(scripts: list[str], env_ids: list[str], machine: str, command: str) -> str:
    """The plot's title in words: algorithm (file) on env ids, hardware. command: the run.py command of the grid."""
    names = {s: ALGORITHMS.get(s, s.removesuffix(".py")) for s in scripts}
    if "--no-her" in command and "dqn_per_her.py" in names:
        names["dqn_per_her.py"] = "DQN"
    return f"{words([f'{names[s]} ({s})' for s in scripts])} on {words(env_ids)}, {hardware(machine)}"


def plot_curves(curves: dict, thresholds: dict, tag: str, window: int, title: str, path: Path) -> plt.Figure:
    """One panel per env id: each variant's mean over seeds with its min-max band, and the threshold.
    curves: {(script, env id, variant): (steps, mean, min, max, number of seeds)}."""
    env_ids = list(dict.fromkeys(k[1] for k in curves))
    scripts = {k[0] for k in curves}
    quantity = tag.split("/")[-1].replace("episodic_", "").replace("_", " ")  # return, success rate
    fig, axes = plt.subplots(1, len(env_ids), figsize=(5.5 * len(env_ids), 4.3), squeeze=False)
    for ax, env_id in zip(axes[0], env_ids, strict=True):
        for (script, e, variant), (steps, mean, lo, hi, _) in curves.items():
            if e != env_id:
                continue
            label = "default flags" if variant == "default" else variant
            (line,) = ax.plot(steps, mean, label=label if len(scripts) == 1 else f"{script} {label}")
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
        if env_id in thresholds:
            ax.axhline(thresholds[env_id], color="gray", ls="--", lw=0.8, label=f"threshold {thresholds[env_id]:g}")
        atari = "NoFrameskip" in env_id or env_id.startswith("ALE/")
        ax.set(
            title=env_id,
            xlabel="agent steps (4 frames each)" if atari else "environment steps",
            ylabel=f"training {quantity} ({window}-episode mean)",
        )
        ax.xaxis.set_major_formatter(FuncFormatter(steps_tick))
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    seeds = sorted({c[-1] for c in curves.values()})
    if seeds == [1]:
        band = "one seed per curve"
    else:
        band = f"lines: mean over {words([str(n) for n in seeds])} seeds; bands: lowest to highest seed"
    fig.suptitle(f"{title}\n{band}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def read_curves(folder: Path) -> dict:
    """The curves of a recorded result from its CSVs: {(script, env id, variant): (steps, mean, min, max, seeds)}."""
    curves = {}
    for path in folder.glob("*.csv"):
        stem, env_id, variant = path.stem.split("__")
        header = path.read_text().split("\n", 1)[0].split(",")
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        column = {name: data[:, i] for i, name in enumerate(header)}
        n_seeds = sum(name.startswith("seed_") for name in header)
        curves[stem + ".py", env_id, variant] = (column["step"], column["mean"], column["min"], column["max"], n_seeds)
    return dict(sorted(curves.items()))  # the order report.py made them in


def threshold_cell(thresholds: dict, env_id: str) -> str:
    return f"{thresholds[env_id]:g}" if env_id in thresholds else "-"


def markdown_table(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)] + ["| " + " | ".join(r) + " |" for r in rows]


def relayout(text: str, thresholds: dict) -> str:
    """A recorded results.md with its table in today's columns (HEAD); every other line and every value kept."""
    lines = text.splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    first, last = table[0], table[-1]
    old_head = [c.strip() for c in lines[first].strip().strip("|").split("|")]
    rows = []
    for line in lines[first + 2 : last + 1]:
        row = dict(zip(old_head, [c.strip() for c in line.strip().strip("|").split("|")], strict=True))
        row.setdefault("threshold", threshold_cell(thresholds, row["env id"]))
        rows.append([row[h] for h in HEAD])
    return "\n".join(lines[:first] + markdown_table(rows) + lines[last + 1 :]) + "\n"


def replot(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Redraw a recorded result's plot from its CSVs; its results.md in today's table columns."""
    folder = recorded(args.name)
    text = (folder / "results.md").read_text()
    commands = re.search(r"^Commands: `(.+)` then `(.+)`\.$", text, re.MULTILINE)
    machine = re.search(r"^Machine: (.+?); ", text, re.MULTILINE).group(1)
    made_by = parser.parse_args(shlex.split(commands.group(2))[2:])  # thresholds, tag and window as recorded
    thresholds = {k: float(v) for k, v in (t.split("=", 1) for t in made_by.threshold)}
    curves = read_curves(folder)
    scripts, env_ids = list(dict.fromkeys(k[0] for k in curves)), list(dict.fromkeys(k[1] for k in curves))
    out = output_folder(args.name, args.record)
    title = plot_title(scripts, env_ids, machine, commands.group(1))
    plot_curves(curves, thresholds, made_by.tag, made_by.window, title, out / "curves.png")
    command = "python " + shlex.join(["benchmarks/report.py", *sys.argv[1:]])
    lines = [line for line in relayout(text, thresholds).splitlines() if not line.startswith(REDRAWN)]
    (out / "results.md").write_text("\n".join([*lines, f"{REDRAWN}: `{command}`."]) + "\n")
    say_wrote(out, ["curves.png", "results.md"], args.record)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--threshold", nargs="*", default=[], help="ENV_ID=VALUE, e.g. CartPole-v1=475")
    parser.add_argument(
        "--tag", default="charts/episodic_return", help="the scalar to report, e.g. charts/success_rate"
    )
    parser.add_argument("--window", type=int, default=20, help="episodes in the moving mean (default 20)")
    parser.add_argument("--points", type=int, default=200, help="grid points of the CSV curves")
    parser.add_argument("--record", action="store_true", help=RECORD_HELP)
    parser.add_argument(
        "--replot", action="store_true", help="redraw the recorded result's plot from its CSVs (see above)"
    )
    args = parser.parse_args()
    if args.replot:
        return replot(parser, args)
    thresholds = {k: float(v) for k, v in (t.split("=", 1) for t in args.threshold)}

    src = ROOT / "benchmarks" / "runs" / args.name
    out = output_folder(args.name, args.record)
    meta = json.loads((src / "meta.json").read_text())
    latest = {}  # the last record of each job wins when a grid was re-run
    for line in (src / "manifest.jsonl").read_text().splitlines():
        job = json.loads(line)
        latest[(job["script"], job["env_id"], job["variant"], job["seed"])] = job
    groups = defaultdict(list)
    for (script, env_id, variant, _), job in sorted(latest.items()):
        if job["returncode"] not in (0, 130, 143, -2, -15) or not job["run_dir"]:  # stopped by SIGINT or SIGTERM
            sys.exit(f"error: job failed: {job['command']} (see {job['log']})")
        job["run_dir"] = str(src / "runs" / Path(job["run_dir"]).name)  # also when made on another machine
        groups[(script, env_id, variant)].append(job)
    killed = [f"{k[1]} {k[2]} seed {k[3]}" for k, job in sorted(latest.items()) if job["returncode"] in (-2, -15)]

    rows, curves, resumed = [], {}, {}  # resumed: {job's key: what to say of it}
    for (script, env_id, variant), jobs in groups.items():
        per_seed = []
        for job in jobs:
            s = read_scalars(job["run_dir"], [args.tag, "charts/SPS"])
            steps, returns = s[args.tag][:, 0], s[args.tag][:, 1]
            smooth = moving_mean(returns, args.window)
            threshold = thresholds.get(env_id)
            reached = steps_to_threshold(steps, smooth, threshold, args.window) if threshold is not None else None
            after = smooth[np.searchsorted(steps, reached) :].min() if reached is not None else None
            sps, wall, spans = s["charts/SPS"][-1, 1], job["wall_s"], legs(job["run_dir"])
            if len(spans) > 1:  # resumed after a signal: SPS and wall time over all legs
                sps, wall = s["charts/SPS"][-1, 0] / sum(spans), sum(spans)
                last = f"its last episode ended at step {int(steps[-1]):,}"
                resumed[(script, env_id, variant, job["seed"])] = (
                    f"{env_id} seed {job['seed']} in {len(spans)} legs ({last})"
                )
            per_seed.append(
                {
                    "seed": job["seed"],
                    "steps": steps,
                    "smooth": smooth,
                    "final": returns[-100:].mean(),
                    "reached": reached,
                    "after": after,
                    "sps": sps,
                    "wall": wall,
                    "rss": job["peak_rss_mb"],
                }
            )
        first, last = max(p["steps"][0] for p in per_seed), min(p["steps"][-1] for p in per_seed)
        grid = np.linspace(first, last, args.points).astype(int)  # the steps where every seed has a value
        seeds = np.stack([np.interp(grid, p["steps"], p["smooth"]) for p in per_seed])
        stats = [seeds.mean(0), seeds.std(0), seeds.min(0), seeds.max(0)]
        table = np.column_stack([grid, *stats, seeds.T])
        header = ",".join(["step", "mean", "std", "min", "max"] + [f"seed_{p['seed']}" for p in per_seed])
        csv_path = out / f"{script.removesuffix('.py')}__{env_id}__{variant}.csv"
        np.savetxt(csv_path, table, delimiter=",", header=header, comments="", fmt="%.6g")
        curves[(script, env_id, variant)] = (grid, stats[0], stats[2], stats[3], len(per_seed))

        finals = np.array([p["final"] for p in per_seed])
        reached = np.array([np.inf if p["reached"] is None else p["reached"] for p in per_seed])
        median, worst = np.median(reached), reached.max()  # a seed that never got there counts as infinite
        to_threshold = "-"
        if env_id in thresholds:
            to_threshold = " / ".join(fmt_steps(None if np.isinf(x) else int(x)) for x in (median, worst))
            to_threshold += f" ({np.isfinite(reached).sum()}/{len(reached)})"
        afters = [p["after"] for p in per_seed if p["after"] is not None]
        rss = [p["rss"] for p in per_seed]
        rows.append(
            [
                script,
                env_id,
                variant,
                str(len(per_seed)),
                f"{finals.mean():.1f} ± {finals.std():.1f}",
                threshold_cell(thresholds, env_id),
                to_threshold,
                f"{min(afters):.0f}" if afters else "-",
                f"{np.median([p['sps'] for p in per_seed]):.0f}",
                f"{np.median([p['wall'] for p in per_seed]):.0f}",
                "-" if None in rss else f"{np.median(rss):.0f}",  # None: not measured
            ]
        )

    env_ids = list(dict.fromkeys(k[1] for k in curves))
    title = plot_title(list(dict.fromkeys(k[0] for k in curves)), env_ids, meta["machine"], meta["command"])
    plot_curves(curves, thresholds, args.tag, args.window, title, out / "curves.png")
    lines = markdown_table(rows)
    thresholds_text = ", ".join(f"{k} {v:g}" for k, v in thresholds.items()) or "none"
    report_cmd = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/report.py", *sys.argv[1:]])
    lines += [
        "",
        f"Thresholds ({args.window}-episode moving mean of training returns): {thresholds_text}.",
        (
            f"Machine: {meta['machine']}; {meta['jobs_at_once']} jobs at once, {meta['threads_per_job']} torch "
            f"thread(s) each."
        ),
        f"Commit: `{meta['commit']}`, started {meta['started']}.",
        f"Commands: `{meta['command']}` then `{report_cmd}`.",
    ]
    stopped = [  # a run continued with --resume has its own line, with its legs
        f"{k[1]} seed {k[3]}"
        for k, job in sorted(latest.items())
        if job["returncode"] in (130, 143) and k not in resumed
    ]
    if resumed:
        lines.append(
            f"Continued with --resume after a signal: {', '.join(resumed.values())}; SPS and wall time count every "
            "leg (the span of each leg's events file), peak memory is the first leg's (the only one run.py measured)."
        )
    if stopped:
        lines.append(f"Stopped by a signal before --total-timesteps (each wrote its checkpoint): {', '.join(stopped)}.")
    if killed:  # a signal after the training loop (the final evaluation): the curve is whole, the evaluation is not
        lines.append(f"Ended by a signal without its handler (no checkpoint), as far as it got: {', '.join(killed)}.")
    if meta.get("note"):
        lines.append(f"Note: {meta['note']}.")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    say_wrote(out, ["results.md", "curves.png", f"{len(curves)} CSV files"], args.record)


if __name__ == "__main__":
    main()
