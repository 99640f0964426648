"""The HER paper's Figure 1 from a benchmark grid of dqn_per_her.py on bit flipping: success rate against n.

Reads benchmarks/runs/{name}/ (variants named "{method}-n{N}", such as her-n30 and dqn-n30, made by run.py)
and, for every variant and seed (grouped by n and the run's --total-timesteps; the plot shows each n's
longest runs), the success of each training episode (charts/success_rate). Per seed: the final success
rate (last 100 episodes), the first step where a 100-episode window reaches --threshold, and the lowest
100-episode window after that. Writes benchmarks/results/{name}/figure1.png, figure1.md, runs.csv (one row
per run) and curves.csv (each run's 100-episode success window against steps).

    python benchmarks/her_figure1.py --name her_bits
"""

import argparse
import json
import re
import shlex
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from report import ROOT, moving_mean, read_scalars  # benchmarks/report.py

sys.path.insert(0, str(ROOT))
from dqn_per_her import Args  # the --total-timesteps of runs that leave it out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", nargs="+", default=["her_bits"], help="one or more grids; output in the first")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
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
        curves += [f"{method},{n},{total},{job['seed']},{int(st)},{w:.4f}" for st, w in
                   zip(steps[args.window - 1 :][::every], window[::every], strict=True)]  # fmt: skip
        run = {"seed": job["seed"], "final": success[-args.window :].mean(), "reached": reached, "total": total,
               "min_after": window[hits[0] :].min() if len(hits) else None}  # fmt: skip
        table[method, int(n), total].append(run)
    lines = [(f"| method | n bits | steps run | final success (last {args.window} ep.), mean ± std | "
             f"steps to {args.threshold} per seed | lowest {args.window}-episode window after it, per seed |"),
             "|---|---|---|---|---|---|"]  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"her": "DQN + HER", "dqn": "DQN"}
    for method in sorted(
        {m for m, _, _ in table}, key=lambda m: (m not in labels, list(labels).index(m) if m in labels else m)
    ):
        label = labels.get(method, method)
        runs = sorted((n, total) for m, n, total in table if m == method)
        longest = {n: total for n, total in runs}  # the plot shows each n's longest runs
        means = [np.mean([r["final"] for r in table[method, n, t]]) for n, t in longest.items()]
        stds = [np.std([r["final"] for r in table[method, n, t]]) for n, t in longest.items()]
        ax.errorbar(list(longest), means, yerr=stds, marker="o", capsize=3, label=label)
        for n, total in runs:
            rows = sorted(table[method, n, total], key=lambda r: r["seed"])
            finals = [r["final"] for r in rows]
            reached = ", ".join("-" if r["reached"] is None else str(r["reached"]) for r in rows)
            lowest = ", ".join("-" if r["min_after"] is None else f"{r['min_after']:.2f}" for r in rows)
            lines.append(f"| {label} | {n} | {rows[0]['total']} | {np.mean(finals):.3f} ± {np.std(finals):.3f} | "
                         f"{reached} | {lowest} |")  # fmt: skip
    env_ids = sorted({job["env_id"] for job in jobs})
    title = "Bit flipping (HER paper, Figure 1)" if env_ids == ["BitFlip-v0"] else ", ".join(env_ids)
    ax.set(xlabel="number of bits n", ylabel=f"success rate (last {args.window} episodes)", ylim=(-0.05, 1.05),
           title=title)  # fmt: skip
    ax.legend()
    out = ROOT / "benchmarks" / "results" / args.name[0]
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "figure1.png", dpi=120, bbox_inches="tight")
    seeds = sorted({r["seed"] for rows in table.values() for r in rows})
    lines += ["", f"Seeds {seeds}. Machine: {metas[0]['machine']}."]
    lines += [f"Commit `{m['commit']}`, started {m['started']}: `{m['command']}`" for m in metas]
    lines += [f"Then: `python benchmarks/her_figure1.py {shlex.join(sys.argv[1:])}`."]
    (out / "figure1.md").write_text("\n".join(lines) + "\n")
    (out / "curves.csv").write_text("\n".join(curves) + "\n")
    summary = ["method,n_bits,total_timesteps,seed,final_success,steps_to_threshold,lowest_window_after"]
    summary += [f"{m},{n},{t},{r['seed']},{r['final']:.4f},{r['reached'] or ''},"
                f"{'' if r['min_after'] is None else round(float(r['min_after']), 4)}"
                for (m, n, t), rows in sorted(table.items())
                for r in sorted(rows, key=lambda r: r["seed"])]  # fmt: skip
    (out / "runs.csv").write_text("\n".join(summary) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
