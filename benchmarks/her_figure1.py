"""The HER paper's Figure 1 from a benchmark grid of dqn_per_her.py on bit flipping: success rate against n.

Reads benchmarks/runs/{name}/ (variants named "{method}-n{N}", such as her-n30 and dqn-n30, made by run.py)
and, for every variant and seed (grouped by n and the run's --total-timesteps; the plot shows each n's
longest runs and says how many steps they had), the success of each training episode (charts/success_rate).
Per seed: the final success rate (last 100 episodes), the first step where a 100-episode window reaches
--threshold, and the lowest 100-episode window after that. Writes figure1.png, figure1.md, runs.csv (one row
per run) and curves.csv (each run's 100-episode success window against steps) to the grid's own (git-ignored)
folder benchmarks/runs/{name}/, or with --record to benchmarks/results/{name}/, the recorded result.

--replot redraws the plot of a recorded result from its runs.csv (the event files are not committed).

    python benchmarks/her_figure1.py --name her_bits --record
    python benchmarks/her_figure1.py --name her_fig1 --replot --record
"""

import argparse
import csv
import itertools
import json
import re
import shlex
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from report import REDRAWN, ROOT, hardware, moving_mean, read_scalars, steps_tick  # benchmarks/report.py
from run import RECORD_HELP, output_folder, recorded, say_wrote  # benchmarks/run.py

LABELS = {"her": "DQN + HER", "dqn": "DQN"}
TASKS = {
    "BitFlip-v0": "Bit flipping, a new goal every episode (BitFlip-v0, as in the HER paper)",
    "BitFlipFixedGoal-v0": "Bit flipping, the goal fixed at all ones (BitFlipFixedGoal-v0)",
}


def methods_in_order(table: dict) -> list[str]:
    return sorted(
        {m for m, _, _ in table}, key=lambda m: (m not in LABELS, list(LABELS).index(m) if m in LABELS else m)
    )


def plot_figure1(table: dict, env_ids: list[str], machine: str, window: int, path) -> plt.Figure:
    """Final success rate against n, mean ± std over seeds, each method's longest runs per n; the legend says how
    many environment steps those runs had. table: {(method, n, total steps): [{"seed", "final", ...}, ...]}."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for method in methods_in_order(table):
        runs = sorted((n, total) for m, n, total in table if m == method)
        longest = {n: total for n, total in runs}  # the plot shows each n's longest runs
        means = [np.mean([r["final"] for r in table[method, n, t]]) for n, t in longest.items()]
        stds = [np.std([r["final"] for r in table[method, n, t]]) for n, t in longest.items()]
        budgets = list(dict.fromkeys(steps_tick(t) for t in longest.values()))
        budget = budgets[0] if len(budgets) == 1 else ", ".join(steps_tick(t) for t in longest.values())
        label = f"{LABELS.get(method, method)}: {budget} steps"
        ax.errorbar(list(longest), means, yerr=stds, marker="o", capsize=3, label=label)
    seeds = sorted({len(rows) for rows in table.values()})
    title = " / ".join(TASKS.get(e, e) for e in env_ids)
    ax.set(
        xlabel="number of bits n",
        ylabel=f"final success rate (last {window} episodes)",
        ylim=(-0.05, 1.05),
        title=f"{title}\ndqn_per_her.py, {' to '.join(map(str, seeds))} seeds a point (mean ± std), "
        f"{hardware(machine)}",
    )
    ax.title.set_fontsize(9)
    ax.set_xticks(sorted({n for _, n, _ in table}))
    ax.legend(
        title="method: environment steps per run (by n)",
        fontsize=8,
        title_fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=2,
    )
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def env_ids_of(command: str) -> list[str]:
    """The --env-ids of a run.py command."""
    words = shlex.split(command)
    return list(itertools.takewhile(lambda w: not w.startswith("--"), words[words.index("--env-ids") + 1 :]))


def replot(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Redraw a recorded Figure 1 from its runs.csv, with the window of the command that made it."""
    folder = recorded(args.name[0])
    text = (folder / "figure1.md").read_text()
    machine = re.search(r"^Seeds .*?\. Machine: (.+)\.$", text, re.MULTILINE).group(1)
    env_ids = [e for command in re.findall(r"^Commit .*?: `(.+)`$", text, re.MULTILINE) for e in env_ids_of(command)]
    made_by = parser.parse_args(shlex.split(re.search(r"^Then: `(.+)`\.$", text, re.MULTILINE).group(1))[2:])
    table = defaultdict(list)
    with open(folder / "runs.csv") as f:
        for row in csv.DictReader(f):
            key = (row["method"], int(row["n_bits"]), int(row["total_timesteps"]))
            table[key].append({"seed": int(row["seed"]), "final": float(row["final_success"])})
    out = output_folder(args.name[0], args.record)
    plot_figure1(table, sorted(set(env_ids)), machine, made_by.window, out / "figure1.png")
    command = "python " + shlex.join(["benchmarks/her_figure1.py", *sys.argv[1:]])
    lines = [line for line in text.splitlines() if not line.startswith(REDRAWN)]
    (out / "figure1.md").write_text("\n".join([*lines, f"{REDRAWN}: `{command}`."]) + "\n")
    say_wrote(out, ["figure1.png", "figure1.md"], args.record)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", nargs="+", default=["her_bits"], help="one or more grids; output in the first")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--record", action="store_true", help=RECORD_HELP)
    parser.add_argument("--replot", action="store_true", help="redraw the recorded plot from its runs.csv")
    args = parser.parse_args()
    if args.replot:
        return replot(parser, args)
    sys.path.insert(0, str(ROOT))
    from dqn_per_her import Args  # the --total-timesteps of runs that leave it out

    metas, jobs = [], []
    for name in args.name:
        runs = ROOT / "benchmarks" / "runs" / name
        metas.append(json.loads((runs / "meta.json").read_text()))
        jobs += [json.loads(line) for line in (runs / "manifest.jsonl").read_text().splitlines() if line.strip()]
    table = defaultdict(list)  # (method, n) -> per-seed dicts
    curves = ["method,n_bits,total_timesteps,seed,step,success_window"]  # the windowed curve of every run
    for job in jobs:
        method, n = re.fullmatch(r"(\w+)-n(\d+)", job["variant"]).groups()
        s = read_scalars(job["run_dir"], ["charts/success_rate"])["charts/success_rate"]
        steps, success = s[:, 0], s[:, 1]
        window = moving_mean(success, args.window)[args.window - 1 :]
        hits = np.flatnonzero(window >= args.threshold)
        reached = int(steps[args.window - 1 + hits[0]]) if len(hits) else None
        cmd = job["command"]
        total = int(cmd[cmd.index("--total-timesteps") + 1]) if "--total-timesteps" in cmd else Args.total_timesteps
        every = max(1, len(window) // 400)  # at most about 400 points a run
        curves += [
            f"{method},{n},{total},{job['seed']},{int(st)},{w:.4f}"
            for st, w in zip(steps[args.window - 1 :][::every], window[::every], strict=True)
        ]
        run = {
            "seed": job["seed"],
            "final": success[-args.window :].mean(),
            "reached": reached,
            "total": total,
            "min_after": window[hits[0] :].min() if len(hits) else None,
        }
        table[method, int(n), total].append(run)
    lines = [
        (
            f"| method | n bits | steps run | final success (last {args.window} ep.), mean ± std | "
            f"steps to {args.threshold} per seed | lowest {args.window}-episode window after it, per seed |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for method in methods_in_order(table):
        label = LABELS.get(method, method)
        for n, total in sorted((n, total) for m, n, total in table if m == method):
            rows = sorted(table[method, n, total], key=lambda r: r["seed"])
            finals = [r["final"] for r in rows]
            reached = ", ".join("-" if r["reached"] is None else str(r["reached"]) for r in rows)
            lowest = ", ".join("-" if r["min_after"] is None else f"{r['min_after']:.2f}" for r in rows)
            lines.append(
                f"| {label} | {n} | {rows[0]['total']} | {np.mean(finals):.3f} ± {np.std(finals):.3f} | "
                f"{reached} | {lowest} |"
            )
    out = output_folder(args.name[0], args.record)
    plot_figure1(table, sorted({job["env_id"] for job in jobs}), metas[0]["machine"], args.window, out / "figure1.png")
    seeds = sorted({r["seed"] for rows in table.values() for r in rows})
    lines += ["", f"Seeds {seeds}. Machine: {metas[0]['machine']}."]
    lines += [f"Commit `{m['commit']}`, started {m['started']}: `{m['command']}`" for m in metas]
    lines += [f"Then: `python benchmarks/her_figure1.py {shlex.join(sys.argv[1:])}`."]
    (out / "figure1.md").write_text("\n".join(lines) + "\n")
    (out / "curves.csv").write_text("\n".join(curves) + "\n")
    summary = ["method,n_bits,total_timesteps,seed,final_success,steps_to_threshold,lowest_window_after"]
    summary += [
        f"{m},{n},{t},{r['seed']},{r['final']:.4f},{r['reached'] or ''},"
        f"{'' if r['min_after'] is None else round(float(r['min_after']), 4)}"
        for (m, n, t), rows in sorted(table.items())
        for r in sorted(rows, key=lambda r: r["seed"])
    ]
    (out / "runs.csv").write_text("\n".join(summary) + "\n")
    print("\n".join(lines))
    say_wrote(out, ["figure1.png", "figure1.md", "runs.csv", "curves.csv"], args.record)


if __name__ == "__main__":
    main()
