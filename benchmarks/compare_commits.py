"""Before and after: the same merge (and a 4-alpha sweep) by several commits of this repository, alternating, in
one run, with the sha256 of every output shard: whole file, and its tensor data alone (after the header).

    python benchmarks/compare_commits.py 72282a1 HEAD --rounds 10
    python benchmarks/compare_commits.py 72282a1 44ab39f HEAD --size small --rounds 3 --no-sweep

Each commit is exported with `git archive` (the repository itself is not touched) into
CHATVEC_BENCH_DIR/commits/SHA and its extension built in place, once; each run starts in that tree, so
`python -m chatvec_fast` imports that commit's package. Peak RSS and wall time as in every benchmark here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import CACHE, alternate, byte_compile, machine, models, save_json, summarize  # noqa: E402

REPO = os.path.dirname(HERE)
ALPHA, ALPHAS = "0.5", "0.25,0.5,0.75,1.0"


def commit_of(ref: str) -> str:
    """The short sha `ref` names, or a clear stop."""
    found = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "--verify", f"{ref}^{{commit}}"],
                           capture_output=True, text=True)  # fmt: skip
    if found.returncode != 0:
        raise SystemExit(f"{ref}: not a commit of {REPO} ({found.stderr.strip()}); name a commit, tag or branch")
    return found.stdout.strip()


def tree_of(sha: str) -> str:
    """The directory holding that commit's files with its native extension built (exported and built once)."""
    tree = os.path.join(CACHE, "commits", sha)
    done = os.path.join(tree, ".built")
    if not os.path.exists(done):
        shutil.rmtree(tree, ignore_errors=True)
        os.makedirs(tree)
        print(f"exporting and building {sha} in {tree} ...", flush=True)
        archive = subprocess.Popen(["git", "-C", REPO, "archive", sha], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tree], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"git archive {sha} failed")
        built = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, text=True,
                               env=dict(os.environ, CHATVEC_REQUIRE_NATIVE="1"), capture_output=True)  # fmt: skip
        if built.returncode != 0:
            raise SystemExit(f"{sha}: building its native extension in {tree} failed:\n{built.stderr[-2000:]}")
        byte_compile(os.path.join(tree, "chatvec_fast"))  # else the commit with less code would gain
        open(done, "w").close()
    return tree


def shard_hashes(out: str) -> dict:
    """{relative shard path: {"file": sha256 of the file, "data": sha256 of the bytes after its header}}."""
    found = {}
    for root, _, files in sorted(os.walk(out)):
        for name in sorted(f for f in files if f.endswith(".safetensors")):
            path = os.path.join(root, name)
            whole, data = hashlib.sha256(), hashlib.sha256()
            with open(path, "rb") as f:
                head = f.read(8)
                whole.update(head + f.read(struct.unpack("<Q", head)[0]))
                while block := f.read(1 << 24):
                    whole.update(block)
                    data.update(block)
            found[os.path.relpath(path, out)] = {"file": whole.hexdigest(), "data": data.hexdigest()}
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("refs", nargs="+", help="commits to compare (anything git rev-parse takes)")
    ap.add_argument("--size", default="1b")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-sweep", action="store_true", help="leave out the hashes of a 4-alpha sweep")
    ap.add_argument("--json", default=os.path.join("bench-results", "commits.json"))
    a = ap.parse_args()
    shas = [commit_of(ref) for ref in a.refs]  # every ref resolved first: a bad one stops before any build
    trees = {sha: tree_of(sha) for sha in shas}
    paths = models(a.size)
    out = os.path.join(CACHE, "commits-out")
    inputs = [x for r in ("base", "chat", "cp") for x in (f"--{r}", paths[r])]

    def command(tree: str, *args: str) -> list[str]:  # started in `tree`: that commit's package is imported
        return ["sh", "-c", 'cd "$0" && exec "$@"', tree, sys.executable, "-m", "chatvec_fast", *args, *inputs,
                "--out", out, "--backend", "native", "--quiet"]  # fmt: skip

    hashes: dict = {"merge": {}, "sweep": {}}  # kind -> commit -> shard -> {"file", "data"}

    def keep(kind):
        def check(sha, path):
            hashes[kind][sha] = shard_hashes(path)

        return check

    merges = {sha: (command(tree, "merge", "--alpha", ALPHA), out) for sha, tree in trees.items()}
    runs = alternate(merges, a.rounds, paths.values(), a.size, keep("merge"))
    if not a.no_sweep:
        sweeps = {sha: (command(tree, "sweep", "--alphas", ALPHAS), out) for sha, tree in trees.items()}
        alternate(sweeps, 1, paths.values(), f"{a.size} sweep", keep("sweep"))

    print(f"\n{machine()}, {a.size} triple, alpha {ALPHA}, {a.rounds} alternating rounds\n")
    print("| commit | wall s, median (min-max) | peak RSS | shard files = first's | tensor data = first's |")
    print("|---|---|---|---|---|")
    first = next(iter(trees))

    def column(kind, sha, key):  # shard -> one of its two hashes
        return {shard: h[key] for shard, h in hashes[kind][sha].items()}

    for sha, rs in runs.items():
        s = summarize(rs)
        same = {key: all(column(kind, sha, key) == column(kind, first, key) for kind in hashes if hashes[kind])
                for key in ("file", "data")}  # fmt: skip
        print(f"| {sha} | {s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f}) | "
              f"{max(r['peak_rss'] for r in rs) / 1e9:.2f} GB | {'yes' if same['file'] else 'NO'} | "
              f"{'yes' if same['data'] else 'NO'} |")  # fmt: skip
    for sha in trees:
        for shard, h in hashes["merge"][sha].items():
            print(f"{sha} merge {shard}: file {h['file']}, data {h['data']}")
    save_json(a.json, {"machine": machine(), "size": a.size, "rounds": a.rounds, "runs": runs, "hashes": hashes})


if __name__ == "__main__":
    main()
