"""`hpoc` command line: one thin dispatcher; each subcommand lives in `hpoc/commands/<name>.py`.

A command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Modules are imported only when their command runs, so `hpoc check` never pays for Ray or torch;
and when the command is named first, only its module is imported to build the parser (on a
login node every import is file-system lookups).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Any, NoReturn

# name -> module under hpoc.commands (order = order in --help)
COMMANDS = {
    "check": "check",
    "compile": "compile",
    "fmt": "fmt",
    "convert": "convert",
    "run": "run",
    "submit": "submit",
    "status": "status",
    "results": "results",
    "report": "report",
    "data": "data",
}

EXIT_OK, EXIT_INTERNAL, EXIT_SPEC = 0, 1, 2
# Commands that compile a spec given on the command line.
PIPE_KEY_COMMANDS = ("check", "compile", "convert", "run", "submit", "status", "results", "report")


def _available(names: list[str]) -> dict[str, object]:
    found = {}
    for name in names:
        mod = COMMANDS[name]
        try:
            found[name] = importlib.import_module(f"hpoc.commands.{mod}")
        except ModuleNotFoundError as exc:  # command not built yet in this checkout
            if exc.name != f"hpoc.commands.{mod}":
                raise
    return found


_SWITCH_GIVEN_VALUE = re.compile(r"argument (?:\S+/)?(\S+): ignored explicit argument '(.*)'$")


class _Parser(argparse.ArgumentParser):
    """argparse, with the next step where its message alone leaves a newcomer guessing."""

    def error(self, message: str) -> NoReturn:
        if m := _SWITCH_GIVEN_VALUE.match(message):  # `--local=true`: a switch takes no value
            message += (f"\n  = help: `{m.group(1)}` is a switch: give it alone to turn it on, "
                        "leave it out to keep it off")
        super().error(message)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, extra = self.parse_known_args(args, namespace)
        if extra:  # argparse says so under `hpoc`'s usage, not the command's, and no more
            command = getattr(self, "commands", {}).get(getattr(ns, "command", None), self)
            command.error(f"unrecognized arguments: {' '.join(extra)}" + _meant(command, extra))
        return ns


def _meant(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """A help line for words a command does not take: an option misspelt or without its
    dashes (`-preflight`, `local`), or an output path given without `-o`."""
    import difflib

    options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    for word in extra:
        bare = "--" + word.split("=")[0].lstrip("-")
        near = difflib.get_close_matches(bare, options, n=1, cutoff=0.8)
        if near:
            return f"\n  = help: did you mean `{near[0]}`?"
    has_out = any("-o" in action.option_strings for action in parser._actions)
    if has_out and len(extra) == 1 and not extra[0].startswith("-"):
        return f"\n  = help: an output path goes after `-o`: `-o {extra[0]}`"
    return ""


class _Version(argparse.Action):
    """`--version`, asked of git only when given (not at every command's parse)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from hpoc.version import describe

        print(describe())
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, one command's sub-parser (what it parses is
    the same: argparse reads nothing but the sub-parser of the command given)."""
    parser = _Parser(
        prog="hpoc", description="Hyperparameter-optimisation studies on HPC clusters."
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show hpoc's version (and commit) and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    parser.commands = {}  # type: ignore[attr-defined]  # name -> its parser, for its usage in errors
    found = _available([only]) if only in COMMANDS else {}
    for name, module in (found or _available(list(COMMANDS))).items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        if name in PIPE_KEY_COMMANDS:
            p.add_argument("--pipe-key", metavar="KEY",
                           help="YAML configs: the pipeline to use when the file holds several (as in itwinai)")
        p.set_defaults(_run=module.run)
        parser.commands[name] = p  # type: ignore[attr-defined]
    return parser


def _reader_gone(stream: object) -> bool:
    """True when `stream` is a pipe whose reader has closed it (`hpoc ... | head -1`)."""
    try:
        import select

        poller = select.poll()
        poller.register(stream.fileno(), 0)  # POLLERR is always reported
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _unknown_command(argv: list[str]) -> str | None:
    """The message for a first word that is no command (`hpoc chek`, `hpoc study.hpo check`,
    `hpoc --local run ...`), with what was meant; None when it is a command or hpoc's own option."""
    if not argv or argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version"):
        return None
    import difflib

    word = argv[0]
    later = next((w for w in argv[1:] if w in COMMANDS), None)
    if word.startswith("-"):
        msg = f"hpoc: error: unknown option `{word}`"
        close = difflib.get_close_matches(word.split("=")[0], ["--help", "--version"], n=1, cutoff=0.6)
        if close:
            return f"{msg}\n  = help: did you mean `{close[0]}`?"
        if later is not None:  # a command's option before the command
            rest = [w for w in argv if w != later]
            return f"{msg}\n  = help: a command's options go after it: `hpoc {later} {' '.join(rest)}`"
        return f"{msg}\n  = help: `hpoc --help` lists the commands; a command's options go after it"
    msg = f"hpoc: error: unknown command `{word}`"
    if later is not None and ("." in word or os.sep in word or os.path.exists(word)):  # the spec first
        rest = [w for w in argv if w != later]
        return f"{msg}\n  = help: the command comes first: `hpoc {later} {' '.join(rest)}`"
    close = difflib.get_close_matches(word.lower(), list(COMMANDS), n=1, cutoff=0.6)
    if close:
        return f"{msg}\n  = help: did you mean `{close[0]}`?"
    return f"{msg}\n  = help: commands are {', '.join(COMMANDS)} (`hpoc --help` says what each does)"


def _interrupted() -> int:
    print("hpoc: interrupted", file=sys.stderr)
    return 130


def main(argv: list[str] | None = None) -> int:
    from hpoc.console import setup_streams

    setup_streams()
    argv_given = argv
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "help":  # `hpoc help [COMMAND]`, as git and pip take it
        argv = [*argv[1:2], "--help"]
    if argv[:1] in (["version"], ["-V"]):  # as other tools spell it, asked for a bug report
        argv = ["--version"]
    if (unknown := _unknown_command(argv)) is not None:
        print(unknown, file=sys.stderr)
        return EXIT_SPEC  # a usage error, as argparse's
    try:  # importing the command's modules takes seconds on a slow shared file system
        parser = build_parser(argv[0] if argv else None)  # options first (`--help`, `--version`): all
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        return _interrupted()
    token = None
    if getattr(args, "pipe_key", None) is not None:
        from hpoc.yaml import PIPE_KEY

        token = PIPE_KEY.set(args.pipe_key)
    try:
        code = int(args._run(args) or 0)
        if argv_given is None and args.command == "run":  # the process is this run's: end it now
            from hpoc.runtime.exits import leave

            leave(code)  # not Python's teardown of torch and Ray: seconds at the end of each run
        return code
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError as exc:
        if not _reader_gone(sys.stdout):  # some other pipe: an error, not `| head`
            print(f"hpoc: error: {exc.strerror or exc}", file=sys.stderr)
            return 2
        # The reader of our output went away: stop quietly, and point stdout at /dev/null
        # so that the flush at exit does not print "Exception ignored ... BrokenPipeError".
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (AttributeError, OSError, ValueError):
            pass
        return 0
    finally:
        if token is not None:
            from hpoc.yaml import PIPE_KEY

            PIPE_KEY.reset(token)


if __name__ == "__main__":
    sys.exit(main())
