"""Run a benchmark grid: script x env id x seed x variant, as parallel processes bounded by the core count.

Each job is the script run exactly as a user runs it, from benchmarks/runs/{name}/ (so its run folder lands
in benchmarks/runs/{name}/runs/), with --exp-name set to the variant's name. The runner records, per job,
the command, exit status, wall time and peak resident memory (from the kernel's rusage of that process) in
manifest.jsonl, and the machine, commit and runner command in meta.json. report.py turns it into tables,
CSVs and plots. It writes nothing under benchmarks/results/ (and so takes no --record).

    python benchmarks/run.py --name reinforce --scripts reinforce.py --env-ids CartPole-v1 Acrobot-v1 \\
        --seeds 1 2 3 4 5 --variants "baseline=--baseline value" "no-baseline=--baseline none" \\
        --extra "--total-timesteps 500000"
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    """CPU model, cores and memory, or the GPU when there is one: enough to tell two tables apart."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = (
        subprocess.run(
            check=False,
            args=["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if shutil.which("nvidia-smi")
        else ""
    )
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB" + (f", GPU {gpu}" if gpu else ", no GPU")


def commit() -> str:
    """The checked-out commit (-dirty when tracked files other than recorded results differ), or BENCH_COMMIT
    where git gives none (a copy of the tree without its history, as on a remote GPU machine)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True
    )
    if sha.returncode != 0 or not sha.stdout.strip():
        return os.environ.get("BENCH_COMMIT", "unknown") + " (from BENCH_COMMIT)"
    status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results"]
    dirty = subprocess.run(status, check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return sha.stdout.strip() + ("-dirty" if dirty else "")


RECORD_HELP = (
    "write the result to benchmarks/results/ (the recorded results, quoted by the READMEs); without it, to the "
    "git-ignored scratch folder benchmarks/runs/"
)


def recorded(name: str) -> Path:
    """benchmarks/results/{name}/: the recorded result of that name, the one the READMEs quote."""
    return ROOT / "benchmarks" / "results" / name


def output_folder(name: str, record: bool) -> Path:
    """Where a benchmark writes its result: benchmarks/results/{name}/ with --record, otherwise the git-ignored
    benchmarks/runs/{name}/ (same file names), so that a quick check leaves the recorded results as they are."""
    folder = recorded(name) if record else ROOT / "benchmarks" / "runs" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def say_wrote(folder: Path, files: list[str], record: bool) -> None:
    """One line saying where a benchmark wrote, and how to record it when it did not."""
    where = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    note = "" if record else " (scratch: --record writes benchmarks/results/ instead)"
    print(f"wrote {where}/: {', '.join(files)}{note}", flush=True)


def run_job(job: dict, out_dir: Path, threads: int) -> dict:
    """Run one job to completion; return it with exit status, wall time, peak RSS and its run folder."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log_path = out_dir / "logs" / f"{job['variant']}__{job['env_id']}__{job['seed']}.log"
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(job["command"], cwd=out_dir, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    prefix = f"{job['env_id']}__{job['variant']}__{job['seed']}__"
    runs = [p for p in (out_dir / "runs").glob(prefix + "*") if int(p.name[len(prefix) :]) >= int(start) - 1]
    return {
        **job,
        "returncode": proc.returncode,
        "wall_s": round(time.time() - start, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "run_dir": str(max(runs)) if runs else None,
        "log": str(log_path),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="benchmark name: output in benchmarks/runs/{name}/")
    parser.add_argument("--scripts", nargs="+", required=True, help="scripts at the repository root")
    parser.add_argument("--env-ids", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument(
        "--variants", nargs="+", default=["default="], help='"name=flags", e.g. "no-baseline=--baseline none"'
    )
    parser.add_argument("--extra", default="", help="flags added to every job")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="processes at once (default: core count)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()

    out_dir = ROOT / "benchmarks" / "runs" / args.name
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    variants = [v.split("=", 1) for v in args.variants]
    if any(len(v) != 2 or not v[0] for v in variants):
        parser.error('--variants: each must be "name=flags"')
    jobs = [
        {
            "script": script,
            "env_id": env_id,
            "seed": seed,
            "variant": name,
            "command": [
                sys.executable,
                str(ROOT / script),
                "--env-id",
                env_id,
                "--seed",
                str(seed),
                "--exp-name",
                name,
                *shlex.split(flags),
                *shlex.split(args.extra),
            ],
        }
        for script in args.scripts
        for env_id in args.env_ids
        for name, flags in variants
        for seed in args.seeds
    ]
    meta = {
        "name": args.name,
        "machine": machine(),
        "commit": commit(),
        "jobs_at_once": args.jobs,
        "threads_per_job": args.threads,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python " + " ".join(shlex.quote(a) for a in ["benchmarks/run.py", *sys.argv[1:]]),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    lock = threading.Lock()
    failed = 0
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
    ]
    with (
        open(out_dir / "manifest.jsonl", "a") as manifest,
        Progress(*columns, disable=not sys.stdout.isatty()) as progress,
        ThreadPoolExecutor(args.jobs) as pool,
    ):
        task = progress.add_task(args.name, total=len(jobs), last="")

        def work(job):
            nonlocal failed
            result = run_job(job, out_dir, args.threads)
            with lock:
                manifest.write(json.dumps(result) + "\n")
                manifest.flush()
                failed += result["returncode"] != 0
                line = (
                    f"{job['variant']} {job['env_id']} seed {job['seed']}: exit {result['returncode']}, "
                    f"{result['wall_s']:.0f} s, {result['peak_rss_mb']:.0f} MB"
                )
                progress.update(task, advance=1, last=line)
                if not sys.stdout.isatty():
                    print(line, flush=True)

        list(pool.map(work, jobs))
    print(f"{len(jobs) - failed}/{len(jobs)} jobs succeeded; manifest: {out_dir / 'manifest.jsonl'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
