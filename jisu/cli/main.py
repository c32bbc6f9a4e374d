"""The `jisu` command."""

from __future__ import annotations

import importlib
import sys

import click

from jisu import __version__
from jisu.cli.common import EXIT_USER_ERROR

# Each command's module is imported only when that command runs (or --help lists them): `jisu
# ask` through a running server must not pay for FastAPI, llama.cpp or the web bundle.
COMMANDS = {
    "ask": "jisu.cli.ask:ask",
    "chat": "jisu.cli.chat:chat",
    "export-web": "jisu.cli.export_web:export_web",
    "history": "jisu.cli.history:history",
    "models": "jisu.cli.models:models",
    "pull": "jisu.cli.models:pull",
    "quantize": "jisu.cli.models:quantize_command",
    "serve": "jisu.cli.serve:serve",
}


class LazyCommands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[name].partition(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=LazyCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jisu")
def cli():
    """极速 jisu: a fast local chat assistant for Qwen2.5-0.5B-Instruct, on your CPU."""


def main() -> None:
    # Errors are one line on stderr, never a usage dump or a traceback: exit code 2 for usage
    # errors (click's and UserError), 1 for runtime failures (RuntimeFailure), 130 for Ctrl-C.
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
