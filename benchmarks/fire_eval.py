"""Evaluation in Breakout-like games after a lost life: does the policy stand still until the time limit?

Loads a model.pt that actor_critic_gae.py or dqn_atari.py saved and evaluates it with the `evaluate` of the
script file given: this commit's, or the same script at an older commit (a `git worktree`), so that two ways
of handling FIRE are compared on the same network. Prints one line per game (return, agent steps, whether
the time limit of 108,000 frames ended it) and a summary; with --out, writes them as JSON too.

    python benchmarks/fire_eval.py --script actor_critic_gae.py --model runs/.../model.pt --episodes 5
    python benchmarks/fire_eval.py --script /tmp/old/actor_critic_gae.py --model runs/.../model.pt --episodes 5
"""

import argparse
import importlib.util
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def load(script: str):
    spec = importlib.util.spec_from_file_location(Path(script).stem, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Recorded:
    """A vector environment (or a single one) whose step records each game's length and how it ended."""

    def __init__(self, env, games: list):
        self.env, self.games, self.steps = env, games, 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if np.any(terminated) or np.any(truncated):  # one environment, vectorised or not
            self.games.append({"steps": self.steps, "time_limit": bool(np.any(truncated))})
            self.steps = 0
        return obs, reward, terminated, truncated, info


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", required=True, help="actor_critic_gae.py or dqn_atari.py, at any commit")
    parser.add_argument("--model", required=True, help="model.pt saved by that script (--save-model)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=10_001, help="the evaluation seed (the scripts use seed + 10,000)")
    parser.add_argument("--out", help="also write the games as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    module, state = load(args.script), torch.load(args.model, map_location="cpu", weights_only=False)
    saved = module.Args(**{k: v for k, v in state["args"].items() if module.Args.__dataclass_fields__[k].init})
    games, start = [], time.time()
    if "agent" in state:  # actor_critic_gae.py: greedy actions
        obs_space, action_space = module.validate(saved)
        agent = module.ActorCritic(obs_space.shape, action_space, saved.hidden_size, saved.shared)
        agent.load_state_dict(state["agent"])
        real = module.make_envs
        module.make_envs = lambda *a, **k: Recorded(real(*a, **k), games)
        frame_stack = (saved.frame_stack,) if "frame_stack" in inspect.signature(module.evaluate).parameters else ()
        returns, _ = module.evaluate(agent, saved.env_id, *frame_stack, args.episodes, args.seed)  # (newer files)
    else:  # dqn_atari.py: epsilon-greedy with --eval-epsilon
        _, action_space = module.validate(saved)
        q_network = module.QNetwork(action_space.n)
        q_network.load_state_dict(state["q_network"])
        real = module.make_env
        module.make_env = lambda *a, **k: Recorded(real(*a, **k), games)
        returns, _ = module.evaluate(
            q_network, saved.env_id, saved.sticky_actions, args.episodes, saved.eval_epsilon, args.seed
        )
    for i, (r, game) in enumerate(zip(returns, games, strict=False)):
        print(f"game {i}: return {r:.0f}, {game['steps']} agent steps{', time limit' if game['time_limit'] else ''}")
    stalled = sum(g["time_limit"] for g in games[: len(returns)])
    steps = sum(g["steps"] for g in games[: len(returns)])
    print(
        f"{args.script}: mean return {sum(returns) / len(returns):.1f} over {len(returns)} games, {steps} agent "
        f"steps, {stalled} ended by the time limit, {time.time() - start:.0f} s"
    )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"script": args.script, "model": args.model, "returns": returns, "games": games[: len(returns)]},
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
