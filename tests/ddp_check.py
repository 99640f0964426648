"""Run actor_critic_gae.main under torchrun and check, after every optimiser step, that all replicas hold
identical parameters. Each rank writes {rank, updates, max_diff, global_step, threads} to OUT/rank{rank}.json,
threads being the names of the process's threads once main has returned (Linux).

    torchrun --nproc_per_node 2 tests/ddp_check.py OUT_DIR
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import actor_critic_gae as A

out_dir = Path(sys.argv[1])
stats = {"updates": 0, "max_diff": 0.0}
original_step = torch.optim.Adam.step


def checked_step(self, *args, **kwargs):
    result = original_step(self, *args, **kwargs)
    flat = torch.cat([p.detach().flatten() for group in self.param_groups for p in group["params"]])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    stats["max_diff"] = max(stats["max_diff"], max((g - flat).abs().max().item() for g in gathered))
    stats["updates"] += 1
    return result


torch.optim.Adam.step = checked_step
os.chdir(out_dir)
result = A.main(A.Args(total_timesteps=4096, num_envs=4, num_steps=8, cuda=False, progress=False, eval_episodes=2))
rank = int(os.environ["RANK"])
threads = [(Path("/proc/self/task") / t / "comm").read_text().strip() for t in os.listdir("/proc/self/task")]
(out_dir / f"rank{rank}.json").write_text(
    json.dumps({"rank": rank, **stats, "global_step": result["global_step"], "threads": threads})
)
