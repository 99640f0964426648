"""dqn_per_her.py: the cost of one update with prioritized replay against uniform replay, everything else equal.

Two replay memories of --capacity transitions (BitFlip inputs, n = 15), both full, one with the sum tree.
One update = sample a batch, the TD loss, backward, Adam, and (PER only) the priority update; the sampling
and the priority update are also timed on their own. The two alternate in blocks of --updates, --repeats
times; the medians and the ratio of medians are printed and written to per_cost/per_cost.json: in
benchmarks/runs/ (scratch), or with --record in benchmarks/results/ (the recorded result).

    python benchmarks/per_cost.py --capacity 1000000 --batch-size 128 --repeats 5 --record
"""

import argparse
import json
import sys
import time

import numpy as np
import torch
from run import RECORD_HELP, ROOT, commit, machine, output_folder, say_wrote  # benchmarks/run.py

sys.path.insert(0, str(ROOT))
import dqn_per_her as H


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--updates", type=int, default=500, help="updates per timed block")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--record", action="store_true", help=RECORD_HELP)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = 15
    run_args = H.Args(batch_size=args.batch_size)
    rng = np.random.default_rng(0)
    replays = {}
    for per in (False, True):
        replay = H.ReplayMemory(args.capacity, 2 * n, per, 0.6, 1e-6, seed=0)
        for start in range(0, args.capacity, 100_000):
            m = min(100_000, args.capacity - start)
            x = rng.integers(0, 2, (m, 2 * n)).astype(np.float32)
            replay.add(x, rng.integers(0, n, m), -np.ones(m, np.float32), np.zeros(m, bool), x)
        if per:
            replay.update_priorities(np.arange(args.capacity), rng.exponential(size=args.capacity))
        replays["per" if per else "uniform"] = replay
    q, target = H.QNetwork(2 * n, n, 256), H.QNetwork(2 * n, n, 256)
    opt = torch.optim.Adam(q.parameters(), lr=1e-3, fused=True)

    def block(replay, per: bool) -> dict:
        t_sample = t_priority = 0.0
        start = time.perf_counter()
        for _ in range(args.updates):
            t0 = time.perf_counter()
            b = replay.sample(args.batch_size, 0.5)
            t_sample += time.perf_counter() - t0
            loss, _, td = H.dqn_loss(
                q, target, b, run_args.gamma, run_args.double_q, H.target_bounds(-1.0, 0.0, run_args.gamma)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            if per:
                t0 = time.perf_counter()
                replay.update_priorities(b["idx"], td.numpy())
                t_priority += time.perf_counter() - t0
        total = time.perf_counter() - start
        return {
            "update_us": total / args.updates * 1e6,
            "sample_us": t_sample / args.updates * 1e6,
            "priority_update_us": t_priority / args.updates * 1e6,
        }

    rows = []
    for i in range(args.repeats):
        row = {f"{k}_{name}": v for name in ("uniform", "per") for k, v in block(replays[name], name == "per").items()}
        rows.append(row)
        print(f"repeat {i + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in row.items()), flush=True)
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    med["per_over_uniform"] = med["update_us_per"] / med["update_us_uniform"] - 1
    print(json.dumps(med, indent=1))
    print(f"PER costs {100 * med['per_over_uniform']:.1f}% more per update than uniform replay")
    record = {
        "machine": machine(),
        "commit": commit(),
        "command": "python " + " ".join(sys.argv),
        "capacity": args.capacity,
        "batch_size": args.batch_size,
        "median": med,
        "rows": rows,
    }
    out = output_folder("per_cost", args.record)
    with open(out / "per_cost.json", "w") as f:
        json.dump(record, f, indent=1)
    say_wrote(out, ["per_cost.json"], args.record)


if __name__ == "__main__":
    main()
