"""The `jisu` command."""

from __future__ import annotations

import sys

import click

from jisu import __version__
from jisu.cli.ask import ask
from jisu.cli.chat import chat
from jisu.cli.common import EXIT_USER_ERROR
from jisu.cli.export_web import export_web
from jisu.cli.models import models, pull, quantize_command
from jisu.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jisu")
def cli():
    """极速 jisu: a fast local chat assistant for Qwen2.5-0.5B-Instruct, on your CPU."""


cli.add_command(ask)
cli.add_command(chat)
cli.add_command(export_web)
cli.add_command(pull)
cli.add_command(models)
cli.add_command(quantize_command)
cli.add_command(serve)


def main() -> None:
    # Errors are one line on stderr and exit code 2, never a usage dump or a traceback.
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Exit as exit_:
        code = exit_.exit_code
    except click.Abort:
        click.echo("", err=True)
        code = 130
    except click.ClickException as error:
        click.echo(f"jisu: error: {error.format_message()}", err=True)
        code = EXIT_USER_ERROR if isinstance(error, click.UsageError) else error.exit_code
    sys.exit(code if isinstance(code, int) else 0)
