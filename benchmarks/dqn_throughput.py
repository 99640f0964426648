"""dqn_atari.py: training SPS against the SPS its parts allow, and the replay's memory at capacity.

Parts, each timed on its own in this process with the script's own functions: an environment step (random
action), greedy action selection (one forward pass), sampling a minibatch from a replay of real frames, and
one gradient step (target, loss, backward, Adam). They allow

    parts SPS = 1 / (env + act + (sample + grad) / train_frequency)

Then the script's main() trains with learning_starts steps of random play first, epsilon at its final value
from there; its SPS is measured over the learning phase only, from the wall-clock times TensorBoard records
with charts/SPS. The two alternate --repeats times; the medians and the ratio of medians are printed and
written to dqn_throughput/cpu.json (cpu_threads2.json with --threads 2, cuda.json on a GPU, memory.json with
--memory): in benchmarks/runs/ (scratch), or with --record in benchmarks/results/ (the recorded result).

    python benchmarks/dqn_throughput.py --repeats 3 --learn-steps 3000 --record
    python benchmarks/dqn_throughput.py --memory --checkpoint --record   # fill a 1M replay: peak RSS, checkpoint
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch
from run import RECORD_HELP, ROOT, commit, machine, output_folder, say_wrote  # benchmarks/run.py

sys.path.insert(0, str(ROOT))
import dqn_atari as D


def median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def parts(args: D.Args, device) -> dict:
    envs = D.make_envs(args.env_id, 1)
    obs, _ = envs.reset(seed=0)
    envs.action_space.seed(0)
    replay = D.ReplayMemory(20_000, 1, (84, 84), 4, 0)
    for _ in range(5_000):  # real frames from random play
        actions = envs.action_space.sample()
        next_obs, r, term, trunc, info = envs.step(actions)
        replay.add(obs, actions, np.sign(r), term | info["life_lost"], term | trunc, info.get("final_obs"))
        obs = next_obs
    q, target = D.QNetwork(envs.single_action_space.n).to(device), D.QNetwork(envs.single_action_space.n).to(device)
    opt = torch.optim.Adam(q.parameters(), lr=args.learning_rate)

    def act():
        with torch.no_grad():
            q(torch.as_tensor(obs, device=device)).argmax(1).cpu().numpy()

    def grad():
        loss, _ = D.dqn_loss(q, target, batch, args.double_q, args.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    batch = replay.sample(args.batch_size, device, args.n_step, args.gamma)
    out = {
        "env": median_time(lambda: envs.step(envs.action_space.sample()), 1000),
        "act": median_time(act, 500),
        "sample": median_time(lambda: replay.sample(args.batch_size, device, args.n_step, args.gamma), 500),
        "grad": median_time(grad, 200),
    }
    envs.close()
    out["parts_sps"] = 1 / (out["env"] + out["act"] + (out["sample"] + out["grad"]) / args.train_frequency)
    return out


def loop_sps(args: D.Args) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = D.main(args)
    acc = EventAccumulator(result["run_dir"], size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("charts/SPS")  # logged at the first gradient step and every 100th after it
    first, last = events[0], events[-1]
    return (last.step - first.step) / (last.wall_time - first.wall_time)


def fill_memory(buffer_size: int, checkpoint: bool) -> dict:
    """A training process in miniature: one environment, the two networks and Adam, and a replay of buffer_size
    transitions filled through add() with synthetic frames; then gradient steps on it, and optionally a
    checkpoint with the replay written and read back. Peak RSS of the whole process."""
    args = D.Args(buffer_size=buffer_size, progress=False, cuda=False)
    env = D.make_env(args.env_id, False)
    env.reset(seed=0)
    q, target = D.QNetwork(env.action_space.n), D.QNetwork(env.action_space.n)
    opt = torch.optim.Adam(q.parameters(), lr=args.learning_rate)
    replay = D.ReplayMemory(buffer_size, 1, (84, 84), 4, 0)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (64, 1, 4, 84, 84), dtype=np.uint8)  # 64 distinct stacks, reused
    start = time.perf_counter()
    for t in range(buffer_size):
        done = np.array([t % 1000 == 999])
        replay.add(
            obs[t % 64], np.array([t % 4]), np.array([1.0]), done, done, [obs[(t + 1) % 64][0]] if done else None
        )
    out = {
        "buffer_size": buffer_size,
        "stored_slots": len(replay),
        "frames_gb": replay.frames.nbytes / 1e9,
        "fill_seconds": time.perf_counter() - start,
    }
    for _ in range(20):
        loss, _ = D.dqn_loss(q, target, replay.sample(32, "cpu", args.n_step, args.gamma), args.double_q, args.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out["peak_rss_gb_training"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux
    if checkpoint:
        with tempfile.TemporaryDirectory(dir=output_folder("dqn_throughput", record=False)) as work:  # scratch
            path = os.path.join(work, "checkpoint.pt")
            start = time.perf_counter()
            D.write_checkpoint(path, D.Args(), "dqn_atari.py", {"q_network": q}, {"replay": replay.state_dict()})
            out["checkpoint_gb"], out["checkpoint_write_s"] = os.path.getsize(path) / 1e9, time.perf_counter() - start
            out["peak_rss_gb_after_checkpoint"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
            start = time.perf_counter()
            state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
            replay.load_state_dict(state["replay"])
            del state
            out["checkpoint_read_s"] = time.perf_counter() - start
            out["peak_rss_gb_after_resume"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="BreakoutNoFrameskip-v4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--learn-steps", type=int, default=4000, help="agent steps of the learning phase")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, parts and loop (0: torch's default)")
    parser.add_argument("--cuda", action="store_true")
    parser.add_argument("--memory", action="store_true", help="only the replay memory measurement")
    parser.add_argument("--buffer-size", type=int, default=1_000_000)
    parser.add_argument("--checkpoint", action="store_true", help="with --memory: also write and read a checkpoint")
    parser.add_argument("--record", action="store_true", help=RECORD_HELP)
    args = parser.parse_args()
    out_dir = output_folder("dqn_throughput", args.record)
    meta = {
        "machine": machine(),
        "commit": commit(),
        "command": "python " + " ".join(sys.argv),
        "torch": torch.__version__,
    }
    if args.memory:
        record = {**meta, **fill_memory(args.buffer_size, args.checkpoint)}
        print(json.dumps(record, indent=1))
        with open(out_dir / "memory.json", "w") as f:
            json.dump(record, f, indent=1)
        say_wrote(out_dir, ["memory.json"], args.record)
        return
    if args.threads:
        torch.set_num_threads(args.threads)  # the parts; main() sets the same from --torch-threads
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    learning_starts = 1000
    run_args = D.Args(
        env_id=args.env_id,
        total_timesteps=learning_starts + args.learn_steps,
        buffer_size=100_000,
        learning_starts=learning_starts,
        exploration_fraction=learning_starts / (learning_starts + args.learn_steps),
        eval_episodes=0,
        progress=False,
        cuda=args.cuda,
        torch_threads=args.threads,
    )
    rows = []
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        for i in range(args.repeats):
            row = {**parts(run_args, device), "loop_sps": loop_sps(run_args)}
            rows.append(row)
            print(
                f"repeat {i + 1}: "
                + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in row.items() if "sps" not in k)
                + f" | parts allow {row['parts_sps']:.1f} SPS | loop {row['loop_sps']:.1f} SPS",
                flush=True,
            )
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    med["ratio"] = med["loop_sps"] / med["parts_sps"]
    record = {**meta, "threads": torch.get_num_threads(), "device": str(device), "median": med, "rows": rows}
    print(json.dumps(record["median"], indent=1))
    print(f"loop SPS / parts SPS = {med['ratio']:.3f}")
    name = (
        "cuda.json" if device.type == "cuda" else "cpu.json" if args.threads == 1 else f"cpu_threads{args.threads}.json"
    )
    with open(out_dir / name, "w") as f:
        json.dump(record, f, indent=1)
    say_wrote(out_dir, [name], args.record)


if __name__ == "__main__":
    main()
