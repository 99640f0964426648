"""Training throughput of a script against the random-action throughput of the same vector environment.

Both are measured in one process, alternating, --repeats times: first the script's own make_envs(...)
stepped with random actions (the ceiling: what the simulator and the vector wrapper alone allow), then the
script's main(...) training for --steps steps, and with --against a second training configuration after it
in each repeat. Prints the medians and the ratios of medians and writes them as a table to
sps/{script}__{env id}[__{flags}][__against__{flags}].md: in benchmarks/runs/ (scratch), or with --record in
benchmarks/results/ (the recorded result).

    python benchmarks/sps.py --script reinforce.py --env-id CartPole-v1 --steps 200000 --repeats 5 --record
    python benchmarks/sps.py --script actor_critic_gae.py --env-id CartPoleNoVelocity-v1 --against "recurrent=true"
"""

import argparse
import dataclasses
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


def parse_fields(module, text: str) -> dict:
    """'name=value ...' -> {name: value}, each value of its Args field's type (int where the default is None)."""
    fields = {}
    for name, value in (kv.split("=", 1) for kv in shlex.split(text)):
        default = getattr(module.Args, name)
        if isinstance(default, bool):
            fields[name] = value.lower() in ("1", "true", "yes")
        else:
            fields[name] = int(value) if default is None else type(default)(value)
    return fields


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="reinforce.py")
    parser.add_argument("--env-id", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=200_000, help="environment steps per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flags", default="", help='extra Args fields as "name=value ...", e.g. "num_envs=16"')
    parser.add_argument("--against", default="", help="fields of a second training run per repeat, as --flags")
    parser.add_argument("--record", action="store_true", help=RECORD_HELP)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    module = importlib.import_module(args.script.removesuffix(".py"))
    overrides, against = parse_fields(module, args.flags), parse_fields(module, args.against)
    work = ROOT / "benchmarks" / "runs" / "sps"
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # the training runs' folders land in benchmarks/runs/sps/runs/

    random_sps, train_sps, against_sps = [], [], []
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
        if against:
            against_sps.append(module.main(dataclasses.replace(train_args, **against))["sps"])
            print(f"repeat {repeat + 1}: training with {args.against}: {against_sps[-1]:.0f} SPS")

    device = "cuda" if torch.cuda.is_available() and train_args.cuda else "cpu"
    lines = [
        "| script | env id | num envs | random-action SPS (median) | training SPS (median) | training / random |",
        "|---|---|---|---|---|---|",
        (
            f"| {args.script} | {args.env_id} | {train_args.num_envs} | {np.median(random_sps):.0f} | "
            f"{np.median(train_sps):.0f} | {np.median(train_sps) / np.median(random_sps):.2f} |"
        ),
    ]
    if against:
        ratio = np.median(against_sps) / np.median(train_sps)
        lines[0] += f" training with {args.against} SPS (median) | ratio to training |"
        lines[1] += "---|---|"
        lines[2] += f" {np.median(against_sps):.0f} | {ratio:.2f} |"
    lines += [
        "",
        (
            f"Each median over {args.repeats} alternating repeats of {args.steps} environment steps "
            f"(training SPS: {', '.join(f'{x:.0f}' for x in train_sps)}; random: "
            f"{', '.join(f'{x:.0f}' for x in random_sps)}"
            + (f"; with {args.against}: {', '.join(f'{x:.0f}' for x in against_sps)}" if against else "")
            + f"). Training device: {device}, torch threads: "
            f"{torch.get_num_threads()}."
        ),
        f"Machine: {machine()}. Commit: `{commit()}`.",
        "Command: `python " + " ".join(shlex.quote(a) for a in ["benchmarks/sps.py", *sys.argv[1:]]) + "`.",
    ]
    out = output_folder("sps", args.record)
    suffix = "".join(f"__{kv}" for kv in shlex.split(args.flags))  # one file per set of extra flags
    suffix += "__against" + "".join(f"__{kv}" for kv in shlex.split(args.against)) if against else ""
    name = f"{args.script.removesuffix('.py')}__{args.env_id}{suffix}.md"
    (out / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    say_wrote(out, [name], args.record)


if __name__ == "__main__":
    main()
