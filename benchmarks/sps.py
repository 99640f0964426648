"""Training throughput of a script against the random-action throughput of the same vector environment.

Both are measured in one process, alternating, --repeats times: first the script's own make_envs(...)
stepped with random actions (the ceiling: what the simulator and the vector wrapper alone allow), then the
script's main(...) training for --steps steps. Prints the medians and the ratio of medians and writes them
as a table to sps/{script}__{env id}[__{flags}].md: in benchmarks/runs/ (scratch), or with --record in
benchmarks/results/ (the recorded result).

    python benchmarks/sps.py --script reinforce.py --env-id CartPole-v1 --steps 200000 --repeats 5 --record
"""

import argparse
import importlib
import os
import shlex
import sys
import time

import numpy as np
import torch
from run import RECORD_HELP, ROOT, commit, machine, output_folder, say_wrote  # benchmarks/run.py


def random_action_sps(module, env_id: str, num_envs: int, steps: int, seed: int) -> float:
    envs = module.make_envs(env_id, num_envs)
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    start = time.perf_counter()
    for _ in range(steps // num_envs):
        envs.step(envs.action_space.sample())
    elapsed = time.perf_counter() - start
    envs.close()
    return steps // num_envs * num_envs / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="reinforce.py")
    parser.add_argument("--env-id", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=200_000, help="environment steps per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flags", default="", help='extra Args fields as "name=value ...", e.g. "num_envs=16"')
    parser.add_argument("--record", action="store_true", help=RECORD_HELP)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    module = importlib.import_module(args.script.removesuffix(".py"))
    overrides = {}
    for name, text in (kv.split("=", 1) for kv in shlex.split(args.flags)):
        default = getattr(module.Args, name)
        overrides[name] = text.lower() in ("1", "true", "yes") if isinstance(default, bool) else type(default)(text)
    work = ROOT / "benchmarks" / "runs" / "sps"
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # the training runs' folders land in benchmarks/runs/sps/runs/

    random_sps, train_sps = [], []
    for repeat in range(args.repeats):
        train_args = module.Args(
            env_id=args.env_id,
            total_timesteps=args.steps,
            seed=repeat + 1,
            eval_episodes=0,
            progress=False,
            **overrides,
        )
        random_sps.append(random_action_sps(module, args.env_id, train_args.num_envs, args.steps, repeat + 1))
        train_sps.append(module.main(train_args)["sps"])
        print(f"repeat {repeat + 1}: random actions {random_sps[-1]:.0f} SPS, training {train_sps[-1]:.0f} SPS")

    device = "cuda" if torch.cuda.is_available() and train_args.cuda else "cpu"
    lines = [
        "| script | env id | num envs | random-action SPS (median) | training SPS (median) | training / random |",
        "|---|---|---|---|---|---|",
        (
            f"| {args.script} | {args.env_id} | {train_args.num_envs} | {np.median(random_sps):.0f} | "
            f"{np.median(train_sps):.0f} | {np.median(train_sps) / np.median(random_sps):.2f} |"
        ),
        "",
        (
            f"Each median over {args.repeats} alternating repeats of {args.steps} environment steps "
            f"(training SPS: {', '.join(f'{x:.0f}' for x in train_sps)}; random: "
            f"{', '.join(f'{x:.0f}' for x in random_sps)}). Training device: {device}, torch threads: "
            f"{torch.get_num_threads()}."
        ),
        f"Machine: {machine()}. Commit: `{commit()}`.",
        "Command: `python " + " ".join(shlex.quote(a) for a in ["benchmarks/sps.py", *sys.argv[1:]]) + "`.",
    ]
    out = output_folder("sps", args.record)
    suffix = "".join(f"__{kv}" for kv in shlex.split(args.flags))  # one file per set of extra flags
    name = f"{args.script.removesuffix('.py')}__{args.env_id}{suffix}.md"
    (out / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    say_wrote(out, [name], args.record)


if __name__ == "__main__":
    main()
