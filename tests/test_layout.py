"""The package's shape: stages import one way, the import stays light, modules stay small, the API's options
are declared once, and the compiled module's stub matches it."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
import subprocess
import sys

import pytest
from conftest import requires_native

import chatvec_fast
from chatvec_fast import _native, api, job

PACKAGE = os.path.dirname(chatvec_fast.__file__)
LEAVES = {"alphas", "errors", "dtypes", "kernel_codes", "units", "faults", "filenames", "progress", "_native",
          "regular_files"}  # fmt: skip
STAGES = {"read", "plan", "backends", "write", "run"}

# What each part of the package may import (besides the leaf modules and itself).
ALLOWED = {
    "read": set(),
    "settings": {"backends"},  # the backend names, for --backend's choices
    "job": {"settings", "plan", "backends", "write"},  # builds each stage's input: options, engine, names
    "plan": {"read"},  # a plan takes merge options, not a job
    "backends": {"kernels"},
    "write": set(),
    "report": {"plan", "read"},
    "run": {"read", "plan", "backends", "write", "job", "report"},
    # verify re-derives outputs by its own rules and arithmetic: a planner or kernel bug must not confirm itself
    "verification": {"read", "write", "settings", "report"},
    "testing": {"write", "backends"},
    # merged tensors into memory: the merge's plan, pipeline and kernels, with tensors for files
    "memory": {"read", "plan", "backends", "run", "job", "settings", "report"},
    # tune: a held merge's model switched per alpha and evaluated; merge's own job, finish stage and run
    "tuning": {"memory", "run", "job", "settings", "read", "write", "report", "inspection"},
    # the chat vector measured: the merge's job, plan and reader, the reference's widening, write's staging
    "inspection": {"read", "plan", "backends", "write", "run", "job", "settings"},
    "api": {"job", "settings", "plan", "report", "run", "verification", "tuning", "inspection"},
    "cli": {"api", "backends", "settings", "testing", "read"},  # read: mergekit's tokenizer_source base
    "__main__": {"cli"},
    "__init__": set(),
}


def modules() -> dict[str, str]:
    """Package-relative dotted name -> path; a folder's __init__.py is the folder's name, the package's own
    is '__init__'."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, f), PACKAGE)[:-3].split(os.sep)
                if rel[-1] == "__init__" and len(rel) > 1:
                    rel = rel[:-1]
                found[".".join(rel)] = os.path.join(root, f)
    return found


def part(name: str) -> str:
    """The stage or top-level module a dotted name belongs to ('plan.types' -> 'plan')."""
    return name.split(".")[0]


def imports_of(name: str, path: str) -> set[str]:
    """Package-relative dotted names of the package's modules that `name` imports, lazy imports included."""
    known = modules()
    is_package = path.endswith("__init__.py")
    package = [] if name == "__init__" else (name.split(".") if is_package else name.split(".")[:-1])
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            bases = [a.name[len("chatvec_fast.") :] for a in node.names if a.name.startswith("chatvec_fast.")]
            found.update(bases)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if not (node.module or "").startswith("chatvec_fast"):
                continue
            base = node.module[len("chatvec_fast") :].lstrip(".")
        else:
            parent = package[: len(package) - (node.level - 1)]
            base = ".".join([*parent, *([node.module] if node.module else [])])
        for alias in node.names:
            full = f"{base}.{alias.name}" if base else alias.name
            found.add(full if full in known else (base or "__init__"))
    return found


def test_every_stage_imports_one_way():
    bad = []
    for name, path in modules().items():
        if name == "_C":
            continue
        mine = part(name)
        for target in imports_of(name, path):
            other = part(target)
            if other in LEAVES or other == mine or target == "__init__":
                continue
            if other not in ALLOWED.get(mine, set()):
                bad.append(f"{name} imports {target} ({mine} -> {other})")
    assert not bad, "imports against the arrows:\n" + "\n".join(bad)


def test_leaf_modules_import_only_leaves():
    for name in LEAVES:
        path = os.path.join(PACKAGE, f"{name}.py")
        others = {part(t) for t in imports_of(name, path)} - LEAVES - {"_C", "__init__"}
        assert not others, f"{name} imports {others}"


def test_the_import_graph_has_no_cycles():
    graph = {name: {t for t in imports_of(name, path) if t in modules()} for name, path in modules().items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(node) :], node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])


FORBIDDEN_AT_RUNTIME = {
    "chatvec_fast": {"torch", "triton", "chatvec_fast.api", "chatvec_fast.run", "chatvec_fast.plan"},
    "chatvec_fast.backends": {"torch", "triton", "chatvec_fast.api", "chatvec_fast.run", "chatvec_fast.plan",
                              "chatvec_fast.read", "chatvec_fast.write", "chatvec_fast.job"},
    "chatvec_fast.read": {"torch", "chatvec_fast.plan", "chatvec_fast.write", "chatvec_fast.backends",
                          "chatvec_fast.run", "chatvec_fast.api"},
    "chatvec_fast.plan": {"torch", "chatvec_fast.write", "chatvec_fast.backends", "chatvec_fast.run",
                          "chatvec_fast.api", "chatvec_fast.job", "chatvec_fast.settings"},
    "chatvec_fast.write": {"torch", "chatvec_fast.backends", "chatvec_fast.plan", "chatvec_fast.read",
                           "chatvec_fast.run", "chatvec_fast.api"},
    "chatvec_fast.run": {"torch", "triton", "chatvec_fast.api", "chatvec_fast.cli"},
    "chatvec_fast.cli": {"torch", "triton", "chatvec_fast.run"},
    "chatvec_fast.memory": {"torch", "triton", "transformers", "chatvec_fast.api", "chatvec_fast.cli"},
    "chatvec_fast.tuning": {"torch", "triton", "transformers", "matplotlib", "lingua", "chatvec_fast.api",
                            "chatvec_fast.cli", "chatvec_fast.memory"},
    "chatvec_fast.inspection": {"triton", "matplotlib", "chatvec_fast.api", "chatvec_fast.cli", "chatvec_fast.memory"},
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(FORBIDDEN_AT_RUNTIME))
def test_importing_a_stage_loads_nothing_above_it(module):
    """In a fresh interpreter; torch and triton only load when a backend that needs them is asked for."""
    code = (
        f"import sys, {module}\n"
        f"bad = sorted(m for m in {sorted(FORBIDDEN_AT_RUNTIME[module])!r} if m in sys.modules)\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, f"import {module} loaded {r.stdout.strip()} {r.stderr}"


def test_no_module_over_300_lines():
    long = {name: n for name, path in modules().items() if (n := sum(1 for _ in open(path, encoding="utf-8"))) > 300}
    assert not long, long


ENTRY_POINTS = [api.merge, api.sweep, api.extract, api.apply, api.tune, api.inspect_vector]
# Defaults that differ from the shared one, on purpose.
OWN_DEFAULTS = {("extract", "dtype"): "f32"}


@pytest.mark.parametrize("fn", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_api_options_are_declared_once(fn):
    """Every keyword option is a job.Settings field with the same default, and the docstring explains it."""
    fields = {f.name: f for f in dataclasses.fields(job.Settings)}
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY]
    assert params
    doc = inspect.getdoc(fn)
    for p in params:
        if p.name == "alphas":  # apply's sweep form: the alphas, not an option
            continue
        assert p.name in fields, f"{fn.__name__}({p.name}) is not declared in job.Settings"
        want = OWN_DEFAULTS.get((fn.__name__, p.name), fields[p.name].default)
        assert p.default == want, f"{fn.__name__}({p.name}={p.default!r}), Settings says {want!r}"
        assert p.annotation is not inspect.Parameter.empty, f"{fn.__name__}({p.name}) has no type"
        assert re.search(rf"^\s*{p.name}: \S", doc, re.M), f"{fn.__name__}'s docstring does not explain {p.name}"


def test_help_lists_the_options():
    text = pydoc_text(chatvec_fast.merge)
    for name in ("alpha_for", "special_tokens_from", "max_shard_size", "resume", "backend"):
        assert name in text


def pydoc_text(obj) -> str:
    import pydoc

    return pydoc.render_doc(obj, renderer=pydoc.plaintext)


@requires_native
def test_native_stub_matches_the_bindings():
    stub = ast.parse(open(os.path.join(PACKAGE, "_C.pyi"), encoding="utf-8").read())
    declared = {n.name: n for n in stub.body if isinstance(n, ast.FunctionDef)}
    constants = {n.target.id for n in stub.body if isinstance(n, ast.AnnAssign)}
    module = _native.module
    actual = {name for name in dir(module) if not name.startswith("_") and callable(getattr(module, name))}
    assert set(declared) == actual
    assert constants == {name for name in dir(module) if name.isupper()}
    for name, node in declared.items():
        # pybind11 writes a Python signature as the docstring's first line: parse it as a def.
        signature = getattr(module, name).__doc__.splitlines()[0]
        bound = ast.parse(f"def {signature}: ...").body[0]
        assert [a.arg for a in node.args.args] == [a.arg for a in bound.args.args], (name, signature)
        assert [ast.literal_eval(d) for d in node.args.defaults] == [ast.literal_eval(d) for d in bound.args.defaults]
        assert ast.unparse(node.returns) == ast.unparse(bound.returns), (name, signature)
    # one kernel entry point, reading a KernelCall by name
    assert [a.arg for a in declared["run"].args.args] == ["call", "threads"]
    assert ast.unparse(declared["run"].args.args[0].annotation) == "KernelCall"
    assert "typing_extensions" not in open(os.path.join(PACKAGE, "_C.pyi")).read()


ROOT = os.path.dirname(PACKAGE)


def _import_kernels_from_the_checkout(*python_flags: str, pythonpath: str = "") -> str:
    """What `import kernels` gives in a Python started in the checkout's root (sys.path[0] is that root)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = "import kernels; print(kernels.__file__, getattr(kernels, '__version__', '-'))"
    r = subprocess.run([sys.executable, *python_flags, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_kernels_folder_never_shadows_an_installed_kernels_package(tmp_path):
    """transformers >= 5.2x imports Hugging Face's `kernels` package; run from the checkout's root (as the tests
    and `python -m chatvec_fast` are), our kernels/ folder must hand that name to the installed package."""
    installed = tmp_path / "site" / "kernels"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("__version__ = '9.9.9'\n")
    assert _import_kernels_from_the_checkout(pythonpath=str(tmp_path / "site")) == f"{installed / '__init__.py'} 9.9.9"


def test_without_an_installed_kernels_package_the_folder_reads_as_absent():
    """No other `kernels` on the path (-S: no site-packages): an empty module without __version__, which
    transformers' availability check reads as 'not installed'."""
    assert _import_kernels_from_the_checkout("-S") == f"{os.path.join(ROOT, 'kernels', '__init__.py')} -"
