"""The ``srcore`` subcommands that run on Ray: ``bucket``, ``train`` and ``prepare``.

Each module is one command: ``SUMMARY`` (its line in ``srcore --help``), ``add_arguments(parser)``, ``run(args)``
and ``main(argv, prog)``. ``srcore`` finds them through the ``srcore.commands`` entry points, and the scripts in
``jobs/`` (for ``ray job submit --working-dir .``) call the same ``main``, so the two routes take the same flags.
A module imports only argparse and srcore at the top: ``srcore --help`` lists it without Ray installed, and
``run`` says which extra to install when Ray is missing.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The command's docstring as written, and each flag's default where its help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def parser_for(module_doc: str, prog: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=module_doc, formatter_class=HelpFormatter)


def add_verbose_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's own start-up and log lines on the console (default: in Ray's log files only)")
