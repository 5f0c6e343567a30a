"""The one entry point: ``streamproc <command>``.

Subcommands live next to the code they drive and are registered here lazily, so
``streamproc broker start`` does not pay for importing torch or faust.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from streamproc import __version__
from streamproc.errors import EXIT_CODES, StreamprocError, exit_code

__all__ = ["cli", "main"]

# command name -> ("module:attribute" of a click.Command, one-line help shown by --help)
_COMMANDS = {
    "broker": (
        "streamproc.broker.command:broker_command",
        "Start, stop or inspect the local Kafka broker.",
    ),
    "demo": ("streamproc.tools.demo:demo", "Run the whole pipeline end to end on a local broker."),
    "distill": ("streamproc.compress.command:distill", "Offline job: distil, prune, quantize."),
    "worker": ("streamproc.stream.command:worker", "Run a streaming inference worker."),
    "produce": ("streamproc.tools.produce:produce", "Produce text events to the input topic."),
    "tail": ("streamproc.tools.tail:tail", "Consume and pretty-print predictions."),
    "bench": ("streamproc.tools.bench.command:bench", "End-to-end latency/throughput benchmark."),
    "soak": (
        "streamproc.tools.soak:soak",
        "Steady load for minutes: memory and latency stay flat?",
    ),
    "model": (
        "streamproc.model.command:model",
        "Inspect, verify, publish, list and roll back model artifacts.",
    ),
    "verify": (
        "streamproc.tools.verify:verify",
        "Did the guarantee hold? Check every input offset against outputs and commits.",
    ),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, _, attr = entry[0].partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing must not import every subcommand (torch, faust): use the static help lines.
        with formatter.section("Commands"):
            formatter.write_dl([(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)])


def _exit_codes_epilog() -> str:
    rows = ["0 success", "1 any other failure", "2 usage: a bad command line"]
    rows += [f"{code} {text}" for _, code, text in EXIT_CODES]
    rows.append("130 interrupted")
    # \b: click keeps the lines as they are instead of re-wrapping them into one paragraph.
    return "\b\nExit status:\n" + "\n".join(f"  {row}" for row in rows)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_exit_codes_epilog(),
)
@click.version_option(__version__, "-V", "--version", prog_name="streamproc")
def cli() -> None:
    """streamproc: streaming NLP inference on Kafka."""


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; streamproc's own errors print one line, never a traceback, and exit with
    their family's status (errors.EXIT_CODES)."""
    try:
        return cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except StreamprocError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_code(exc))
