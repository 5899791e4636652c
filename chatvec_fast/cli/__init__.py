"""Command line: chatvec merge | sweep | extract | apply | tune | inspect | verify | demo (or python -m chatvec_fast).

Parses arguments into the API's options and calls it; every decision is the API's. Messages go to stderr
as one line each ("error: ...", "warning: ...", "note: ..."), never as tracebacks.
"""

from __future__ import annotations

import logging
import signal
import sys

from ..errors import ChatvecError
from ..settings import Settings
from ..units import plural
from .arguments import build_parser


def _options(args, command: str) -> dict:
    """The command's options as parsed (settings.Settings names them; the parser took them from there)."""
    return {f.name: getattr(args, f.name) for f in Settings.for_command(command) if hasattr(args, f.name)}


def _print_report(report, dry_run: bool) -> int:
    if not report.leader:  # under torchrun, rank 0 speaks for the job
        return 0
    for note in report.notes if not dry_run else ():  # a dry run's plan lists them
        print(f"note: {note}", file=sys.stderr)
    if report.dropped and not dry_run:
        print(f"note: {plural(len(report.dropped), 'tensor')} of the chat vector not in cp left out: "
              f"{', '.join(report.dropped[:5])}", file=sys.stderr)  # fmt: skip
    if report.inexact:
        print(f"warning: the vector's dtype could not hold {report.inexact} elements of chat - base exactly; "
              "`apply` will differ from `merge` there (use --dtype f64 for an exact vector)",
              file=sys.stderr)  # fmt: skip
    print(report.summary())
    return 0


def _run(args) -> int:
    from .. import api

    command = args.command
    if command == "verify":
        reports = api.verify(args.output, every=args.all, max_ulp=args.max_ulp, checksums_only=args.checksums_only,
                             progress=not args.quiet)  # fmt: skip
        for v in reports:
            print(v.summary())
        return 0 if all(v.ok for v in reports) else 1
    if command == "demo":
        from .demo import run_demo

        return run_demo(args.alpha, args.backend, args.keep)
    options = _options(args, command)
    if command == "tune":
        inputs = {role: getattr(args, role) for role in ("base", "chat", "cp")}
        results = api.run_tune(inputs, args.out, args.alphas, args.text, args.prompts, args.language, options,
                               spelling="cli")  # fmt: skip
        print(results.summary())
        return 0
    if command == "inspect":
        inputs = {role: getattr(args, role) for role in ("base", "chat", "cp") if getattr(args, role) is not None}
        inspection = api.run_inspect(inputs, args.out, options, spelling="cli")
        print(inspection.table())
        if args.out is not None:
            print(f"wrote inspect.json, inspect.md and inspect.png to {args.out}")
        return 0
    if command == "merge":
        inputs, alphas = _merge_inputs(args, options)
    elif command == "apply":
        alphas = args.alphas[0] if args.alphas and len(args.alphas) == 1 else args.alphas
        vector = args.vector[0] if len(args.vector) == 1 else args.vector
        inputs, alphas, sweep = api.apply_inputs(vector, args.cp, args.alpha, alphas)
        report = api.run_command("apply", inputs, args.out, alphas, options, sweep=sweep, spelling="cli")
        return _print_report(report, options["dry_run"])
    else:
        inputs = {role: getattr(args, role) for role in ("base", "chat", "cp") if hasattr(args, role)}
        alphas = args.alphas if command == "sweep" else [1.0]
        if command == "extract" and options.get("dtype") in ("bf16", "f16"):
            print(f"warning: a {options['dtype']} vector rounds most differences; apply will not reproduce merge",
                  file=sys.stderr)  # fmt: skip
    report = api.run_command(command, inputs, args.out, alphas, options, sweep=command == "sweep", spelling="cli")
    return _print_report(report, options["dry_run"])


def _merge_inputs(args, options: dict) -> tuple[dict, list]:
    """(inputs by role, [alpha]) from the options, or from --mergekit-config (which also sets options)."""
    if args.alphas is not None:
        raise ValueError("--alphas is `chatvec sweep`'s (several alphas in one pass: `chatvec sweep ... --alphas "
                         f"{args.alphas}`); merge takes one --alpha")  # fmt: skip
    if args.mergekit_config is None:
        missing = [f"--{r}" for r in ("base", "chat", "cp") if getattr(args, r) is None]
        if missing:
            raise ValueError(f"merge needs {', '.join(missing)} (or --mergekit-config)")
        return {r: getattr(args, r) for r in ("base", "chat", "cp")}, [1.0 if args.alpha is None else args.alpha]
    given = [f"--{n.replace('_', '-')}" for n in ("base", "chat", "cp", "alpha", "alpha_for", "dtype")
             if getattr(args, n) not in (None, [])]  # fmt: skip
    if given:
        raise ValueError(
            f"--mergekit-config gives the models, alpha, per-tensor alphas and dtype; drop {', '.join(given)}"
        )
    from .mergekit_config import read_mergekit_config

    m = read_mergekit_config(args.mergekit_config)
    for note in m.notes:
        print(f"note: {args.mergekit_config}: {note}", file=sys.stderr)
    options.update(alpha_for=list(m.alpha_for), dtype=m.dtype)
    return {"base": m.base, "chat": m.chat, "cp": m.cp}, [m.alpha]


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM: stop like Ctrl-C, so the run cleans up or stays resumable


def _log_to_stderr():
    """Warnings the run gives before it starts working, one line each."""
    logger = logging.getLogger("chatvec_fast")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    try:
        return _run(args)
    except BrokenPipeError:
        return _stdout_closed(args)
    except (ChatvecError, ValueError, NotImplementedError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.command not in ("verify", "demo"):
            print(f"note: {_hint(exc)}", file=sys.stderr)
        return 1 if isinstance(exc, (ChatvecError, OSError)) else 2
    except KeyboardInterrupt as exc:
        print(f"interrupted: {_hint(exc)}", file=sys.stderr)
        return 130


def _hint(exc: BaseException) -> str:
    from .. import api

    return api.failure_hint(exc)


def _stdout_closed(args) -> int:
    """stdout went away (`chatvec merge ... | head`): the work itself is done; say so once, on stderr."""
    import os

    try:  # later writes to the closed pipe (at interpreter exit) must not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError:
        pass
    done = "" if args.command in ("verify", "demo") or getattr(args, "dry_run", False) else " (the output is complete)"
    print(f"error: stdout was closed before the summary could be printed{done}", file=sys.stderr)
    return 1
