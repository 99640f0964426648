"""Turn a benchmark run (benchmarks/runs/{name}/) into CSV curves, a PNG plot and a markdown table.

Reads each job's TensorBoard events with tensorboard's own reader. For every (script, env id, variant):
- a CSV curve: the `--window`-episode moving mean of charts/episodic_return (or --tag) of each seed, interpolated on a
  common grid of environment steps; columns step, mean, std, min, max, then one per seed;
- one PNG with a panel per env id, each variant as its mean with a min-max band over seeds;
- a table row: final score (mean +- std over seeds of each seed's last 100 training episodes), steps until
  the moving mean first reaches --threshold (median over seeds, worst seed, how many got there), the
  lowest moving mean after reaching it, SPS, wall time and peak memory (medians over seeds).
The table ends with the machine, commit and commands. Output: benchmarks/results/{name}/.

    python benchmarks/report.py --name reinforce --threshold CartPole-v1=475 Acrobot-v1=-100
"""

import argparse
import json
import shlex
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parent.parent


def read_scalars(run_dir: str, tags: list[str]) -> dict[str, np.ndarray]:
    """{tag: array of (step, value)} for the tags present in one run folder."""
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    present = acc.Tags()["scalars"]
    return {t: np.array([(e.step, e.value) for e in acc.Scalars(t)]) for t in tags if t in present}


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--threshold", nargs="*", default=[], help="ENV_ID=VALUE, e.g. CartPole-v1=475")
    parser.add_argument(
        "--tag", default="charts/episodic_return", help="the scalar to report, e.g. charts/success_rate"
    )
    parser.add_argument("--window", type=int, default=20, help="episodes in the moving mean (default 20)")
    parser.add_argument("--points", type=int, default=200, help="grid points of the CSV curves")
    args = parser.parse_args()
    thresholds = {k: float(v) for k, v in (t.split("=", 1) for t in args.threshold)}

    src = ROOT / "benchmarks" / "runs" / args.name
    out = ROOT / "benchmarks" / "results" / args.name
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((src / "meta.json").read_text())
    latest = {}  # the last record of each job wins when a grid was re-run
    for line in (src / "manifest.jsonl").read_text().splitlines():
        job = json.loads(line)
        latest[(job["script"], job["env_id"], job["variant"], job["seed"])] = job
    groups = defaultdict(list)
    for (script, env_id, variant, _), job in sorted(latest.items()):
        if job["returncode"] != 0 or not job["run_dir"]:
            sys.exit(f"error: job failed: {job['command']} (see {job['log']})")
        groups[(script, env_id, variant)].append(job)

    rows, curves = [], {}
    for (script, env_id, variant), jobs in groups.items():
        per_seed = []
        for job in jobs:
            s = read_scalars(job["run_dir"], [args.tag, "charts/SPS"])
            steps, returns = s[args.tag][:, 0], s[args.tag][:, 1]
            smooth = moving_mean(returns, args.window)
            threshold = thresholds.get(env_id)
            reached = steps_to_threshold(steps, smooth, threshold, args.window) if threshold is not None else None
            after = smooth[np.searchsorted(steps, reached) :].min() if reached is not None else None
            per_seed.append(
                {
                    "seed": job["seed"],
                    "steps": steps,
                    "smooth": smooth,
                    "final": returns[-100:].mean(),
                    "reached": reached,
                    "after": after,
                    "sps": s["charts/SPS"][-1, 1],
                    "wall": job["wall_s"],
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
        curves[(script, env_id, variant)] = (grid, stats)

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
                to_threshold,
                f"{min(afters):.0f}" if afters else "-",
                f"{np.median([p['sps'] for p in per_seed]):.0f}",
                f"{np.median([p['wall'] for p in per_seed]):.0f}",
                "-" if None in rss else f"{np.median(rss):.0f}",  # None: not measured
            ]
        )

    env_ids = sorted({k[1] for k in curves}, key=list(dict.fromkeys(k[1] for k in curves)).index)
    fig, axes = plt.subplots(1, len(env_ids), figsize=(5.5 * len(env_ids), 4), squeeze=False)
    for ax, env_id in zip(axes[0], env_ids):
        for (script, e, variant), (grid, (mean, _, lo, hi)) in curves.items():
            if e != env_id:
                continue
            label = variant if len({k[0] for k in curves}) == 1 else f"{script[:-3]} {variant}"
            (line,) = ax.plot(grid, mean, label=label)
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2)
        if env_id in thresholds:
            ax.axhline(thresholds[env_id], color="gray", ls="--", lw=0.8)
        ax.set(
            title=env_id,
            xlabel="environment steps",
            ylabel=f"{args.tag.split('/')[-1].replace('episodic_', '').replace('_', ' ')} ({args.window}-episode mean)",
        )
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{args.name}: mean and min-max over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)

    head = [
        "script",
        "env id",
        "variant",
        "seeds",
        "final score (last 100 ep.)",
        "steps to threshold, median / worst (seeds reached)",
        "min after reaching",
        "SPS",
        "wall s",
        "peak RSS MB",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
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
    if meta.get("note"):
        lines.append(f"Note: {meta['note']}.")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out}/results.md, curves.png and {len(curves)} CSV files")


if __name__ == "__main__":
    main()
