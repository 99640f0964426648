"""Run actor_critic_gae.main under torchrun and check, after every optimiser step, that all replicas hold
identical parameters. Each rank writes {rank, updates, max_diff, global_step, threads} to OUT/rank{rank}.json,
threads being the names of the process's threads once main has returned (Linux), and to OUT/rank{rank}.pt the
first update as it happened: the batch handed to a2c_loss (raw advantages) and the parameters before and after
the first optimiser step, so that a test can replay that update in one process on both ranks' batches.

    torchrun --nproc_per_node 2 tests/ddp_check.py OUT_DIR ['{"recurrent": true, ...}']

The optional second argument, JSON, overrides the flags of ARGS, and names them as given on the command line
(what load_run reads: a resumed run takes a --total-timesteps given there). Rank 0 writes its checkpoint at the end.
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import actor_critic_gae as A

ARGS = {
    "total_timesteps": 4096,
    "num_envs": 4,
    "num_steps": 8,
    "cuda": False,
    "progress": False,
    "eval_episodes": 2,
    "norm_adv": True,
    "ent_coef": 0.01,
    "learning_rate": 0.01,
    "adam_eps": 1.0,
    "max_grad_norm": 1e6,
    "checkpoint_every": 4096,
}  # Adam's first step in proportion to the gradient, no clipping
GIVEN = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
ARGS |= GIVEN
first = {"args": ARGS}
out_dir = Path(sys.argv[1])
stats = {"updates": 0, "max_diff": 0.0}
original_step, original_loss = torch.optim.Adam.step, A.a2c_loss


def checked_step(self, *args, **kwargs):
    params = [p for group in self.param_groups for p in group["params"]]
    if "before" not in first:
        first["before"] = [p.detach().clone() for p in params]
    result = original_step(self, *args, **kwargs)
    if "after" not in first:
        first["after"] = [p.detach().clone() for p in params]
    flat = torch.cat([p.detach().flatten() for p in params])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    stats["max_diff"] = max(stats["max_diff"], max((g - flat).abs().max().item() for g in gathered))
    stats["updates"] += 1
    return result


def recorded_loss(agent, b_obs, b_actions, b_advantages, b_returns, *args):
    if "batch" not in first:
        first["batch"] = [t.detach().clone() for t in (b_obs, b_actions, b_advantages, b_returns)]
    return original_loss(agent, b_obs, b_actions, b_advantages, b_returns, *args)


torch.optim.Adam.step = checked_step
A.a2c_loss = recorded_loss
os.chdir(out_dir)
sys.argv = [sys.argv[0], *("--" + name.replace("_", "-") for name in GIVEN)]
result = A.main(A.Args(**ARGS))
rank = int(os.environ["RANK"])
threads = [(Path("/proc/self/task") / t / "comm").read_text().strip() for t in os.listdir("/proc/self/task")]
(out_dir / f"rank{rank}.json").write_text(
    json.dumps({"rank": rank, **stats, "global_step": result["global_step"], "threads": threads})
)
torch.save(first, out_dir / f"rank{rank}.pt")
