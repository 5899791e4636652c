"""Shared benchmark plumbing: the cached model triples, timed subprocess runs, medians, tables."""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

CACHE = os.environ.get("CHATVEC_BENCH_DIR", "/tmp/chatvec-bench")
SHARD_BYTES = 10**9  # 1 GB shards, as the models on the Hub


def models(size: str) -> dict[str, str]:
    """The synthetic triple of a given size (chatvec_fast.testing.synthetic.SHAPES), generated once and cached."""
    from chatvec_fast.testing.synthetic import make_triple

    root = os.path.join(CACHE, f"models-{size}")
    done = os.path.join(root, ".complete")
    paths = {r: os.path.join(root, r) for r in ("base", "chat", "cp")}
    if not os.path.exists(done):
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        print(f"generating the {size} triple in {root} (once) ...", flush=True)
        make_triple(root, size, shard_bytes=SHARD_BYTES)
        open(done, "w").close()
        print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return paths


def require_free(nbytes: int):
    """Stops early, with a clear message, when the disk under CACHE cannot hold what a benchmark writes."""
    os.makedirs(CACHE, exist_ok=True)
    free = shutil.disk_usage(CACHE).free
    if free < nbytes:
        raise SystemExit(
            f"{CACHE}: the benchmark needs {nbytes / 1e9:.1f} GB free, {free / 1e9:.1f} GB is; "
            "free space or set CHATVEC_BENCH_DIR"
        )


def dir_bytes(path: str, suffix=".safetensors") -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(suffix))


def warm(paths):
    """Reads inputs into the page cache (every method then starts warm) and flushes dirty pages."""
    for p in paths:
        files = sorted(glob.glob(os.path.join(p, "*.safetensors")) + glob.glob(os.path.join(p, "*.bin")))
        subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)
    subprocess.run(["sync"], check=True)


def timed(cmd: list[str], env=None) -> dict:
    """Runs cmd; wall time until its output is on disk (a `sync` right after counts), peak RSS, CPU.

    Peak RSS comes from /usr/bin/time when present: a child forked from this
    (large) Python process would otherwise inherit its RSS high-water mark
    through fork and exec, and report this process's memory as its own.
    """
    rss_file = None
    if os.path.exists("/usr/bin/time"):
        fd, rss_file = tempfile.mkstemp(prefix="chatvec-rss-")
        os.close(fd)
        cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file, *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    t1 = time.perf_counter()
    subprocess.run(["sync"], check=True)
    t2 = time.perf_counter()
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({status}):\n{err[-2000:]}")
    peak_rss = usage.ru_maxrss * 1024
    if rss_file is not None:
        with open(rss_file) as f:
            peak_rss = int(f.read().split()[-1]) * 1024
        os.unlink(rss_file)
    return {
        "wall": t2 - t0,
        "wall_no_sync": t1 - t0,
        "sync": t2 - t1,
        "peak_rss": peak_rss,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
    }


def byte_compile(package_dir: str):
    """Compiles a package's modules to bytecode once, as an install does. Where PYTHONDONTWRITEBYTECODE is
    set (or the source tree is read-only), every timed run would otherwise compile chatvec_fast from source
    first: 70 ms a run for it here, and nothing for contenders installed with their bytecode. Best effort:
    where the bytecode cannot be written, runs compile as before."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", package_dir], stdout=subprocess.DEVNULL)


def alternate(methods: dict, rounds: int, inputs, label: str = "", check=None) -> dict:
    """Runs methods {name: (command, output dir)} `rounds` times, alternating A B C A B C ...

    Before each run the output is deleted, inputs warmed and dirty pages flushed. After a method's last
    run, check(name, output dir) may inspect the output (exactness); then it is deleted, so the disk
    never holds more than one output. Returns the runs by name.
    """
    import chatvec_fast

    byte_compile(os.path.dirname(chatvec_fast.__file__))
    runs = {name: [] for name in methods}
    for r in range(rounds):
        for name, (cmd, out) in methods.items():
            shutil.rmtree(out, ignore_errors=True)
            warm(inputs)
            result = timed(cmd)
            runs[name].append(result)
            print(
                f"  [{label} round {r + 1}/{rounds}] {name}: {result['wall']:.2f} s, "
                f"peak RSS {result['peak_rss'] / 1e9:.2f} GB",
                flush=True,
            )
            if r == rounds - 1 and check is not None and os.path.exists(out):
                check(name, out)
            shutil.rmtree(out, ignore_errors=True)
    return runs


def summarize(runs: list[dict], key="wall") -> dict:
    values = [r[key] for r in runs]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB RAM, Python {sys.version.split()[0]}"


def save_json(path: str, doc: dict):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)


# The I/O floors: what moving the same bytes costs with no arithmetic at all. The overlapped floor is what
# a perfect streaming merge costs (it reads, computes and writes at once); the sequential floors read
# everything, then write, as a simple tool would.
OVERLAPPED_FLOOR = "I/O floor, overlapped (3 reads and the O_DIRECT writes at once)"
SEQUENTIAL_FLOOR = "I/O floor, sequential (cat 3 inputs, then dd oflag=direct)"
PAGE_CACHE_FLOOR = "I/O floor, sequential via page cache (cat 3 inputs, then dd conv=fsync)"


def io_floors(paths: dict, out: str, outputs: int = 1, page_cache: bool = True, write_from: str | None = None
              ) -> dict[str, list[str]]:  # fmt: skip
    """Shell commands of the I/O floors for reading the 3 inputs and writing `outputs` output-sized files.

    Each output file gets a real model's bytes (`cat MODEL | dd`), 16 MiB blocks: cp's, or `write_from`'s
    where the output is not cp-sized (FP8 inputs merged to bf16 write a bf16 cp's bytes). The overlapped
    floor runs the reads of the inputs and every output's `cat MODEL | dd oflag=direct` at the same time;
    with `write_from`, cp is read by a job of its own.
    """
    b, c, p = paths["base"], paths["chat"], paths["cp"]
    source = write_from or p
    read_all = f"cat {b}/*.safetensors {c}/*.safetensors {p}/*.safetensors > /dev/null"
    write = [f"cat {source}/*.safetensors | dd of={out}/floor{i}.bin bs=16M iflag=fullblock" for i in range(outputs)]
    reads = [b, c] if write_from is None else [b, c, p]
    jobs = [*(f"cat {m}/*.safetensors > /dev/null" for m in reads), *(f"{w} oflag=direct status=none" for w in write)]
    # Every job in the background at once; then each one waited for, so that a failed dd fails the floor.
    concurrent = " ".join(f'{job} & pids="$pids $!";' for job in jobs)
    floors = {
        OVERLAPPED_FLOOR: ["sh", "-c", f"mkdir -p {out} || exit 1; {concurrent} for p in $pids; do wait $p || "
                           "exit 1; done"],
        SEQUENTIAL_FLOOR: ["sh", "-c", f"{read_all} && mkdir -p {out} && "
                           + " && ".join(f"{w} oflag=direct status=none" for w in write)],
    }  # fmt: skip
    if page_cache:
        floors[PAGE_CACHE_FLOOR] = ["sh", "-c", f"{read_all} && mkdir -p {out} && "
                                    + " && ".join(f"{w} conv=fsync status=none" for w in write)]  # fmt: skip
    return floors


def exact_text(ex: dict | None) -> str:
    """'100% (0)' only when every element is correctly rounded; otherwise enough digits to show the miss
    (0.99999999620 of the elements is 99.9999996%, not a rounded-up 100.0000%)."""
    if not ex:
        return "-"
    share = ex["exact_share"]
    if share == 1.0:
        return f"100% ({ex['max_ulp']})"
    digits = 4
    while f"{100 * share:.{digits}f}" == f"{100:.{digits}f}" and digits < 12:
        digits += 1
    return f"{100 * share:.{digits}f}% ({ex['max_ulp']})"
