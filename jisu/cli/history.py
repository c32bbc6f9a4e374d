"""`jisu history`: the conversations kept for you, by the running `jisu serve` or in the
history file when none runs (jisu.cli.history_store); the same ones the web page shows.

    jisu history                      list, the most recently updated first
    jisu history show ID              the conversation as it stands (its active branch)
    jisu history search WORDS...      conversations holding every word
    jisu history export [ID] > FILE   jisu's JSON of one or all; --format md for one to read
    jisu history import FILE          jisu's JSON or ChatGPT's conversations.json
    jisu history rm ID                asks first on a terminal; -y does not

What a command is about goes to stdout; notes (nothing found, what an import did) to stderr.
"""

from __future__ import annotations

import sys
from contextlib import closing, contextmanager
from datetime import datetime
from typing import Iterator

import click

from jisu.cli.common import RuntimeFailure, reports_user_errors, server_options
from jisu.cli.discovery import find_server, server_address
from jisu.cli.history_store import History, open_history
from jisu.history import ConversationSummary, Message
from jisu.history.formats import answer_figures
from jisu.history.records import DEFAULT_PAGE, MAX_PAGE



class _ListByDefault(click.Group):
    """`jisu history` alone, or with list's options (`jisu history -n 5`), lists."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ListByDefault)
def history():
    """Your conversations: list (the default), show, search, export, import, rm.

    They are kept by the running `jisu serve` (--url, JISU_URL, else http://127.0.0.1:8080 if
    one answers there), or in the history file when no server runs; the web page shows the same.
    """


@contextmanager
def _opened(url: str | None, api_key: str | None) -> Iterator[History]:
    server = find_server(server_address(url, api_key), notice=lambda line: None)
    try:
        with closing(open_history(server, api_key)) as store:
            yield store
    finally:
        if server is not None:
            server.close()


@history.command("list")
@click.option("--limit", "-n", type=click.IntRange(1, MAX_PAGE), default=DEFAULT_PAGE, show_default=True,
              help="How many to list.")
@server_options
@reports_user_errors
def list_command(limit, url, api_key):
    """List the conversations, the most recently updated first."""
    with _opened(url, api_key) as store:
        page = store.conversations(limit)
        # The list carries no sizes: each conversation is read for its count (a page of small reads).
        counts = [len(store.conversation(summary.id).messages) for summary in page.items]
    if not page.items:
        click.echo("no conversations yet", err=True)
    for summary, count in zip(page.items, counts):
        click.echo(f"{_line(summary)}  {_messages(count):>12}  {_title(summary)}")
    if page.total > len(page.items):
        click.echo(f"({len(page.items)} of {page.total}; --limit shows more)", err=True)


@history.command()
@click.argument("conversation_id", metavar="ID")
@server_options
@reports_user_errors
def show(conversation_id, url, api_key):
    """Show conversation ID: its messages as they stand (the active branch)."""
    with _opened(url, api_key) as store:
        conversation = store.conversation(conversation_id)
    click.echo(_title(conversation))
    click.echo(f"{conversation.id} · {_messages(len(conversation.messages))} · created "
               f"{_date(conversation.created_at)} · updated {_date(conversation.updated_at)}")
    if conversation.system is not None:
        click.echo(f"system: {conversation.system}")
    for message in conversation.messages:
        click.echo(f"\n── {_heading(message)} ──\n{message.content}")
        if message.cut_short:
            click.echo("(cut short)")


@history.command()
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", "-n", type=click.IntRange(1, MAX_PAGE), default=DEFAULT_PAGE, show_default=True)
@server_options
@reports_user_errors
def search(words, limit, url, api_key):
    """Conversations holding every one of WORDS (Chinese too), in titles and messages."""
    query = " ".join(words)
    if not query.strip():  # a server asked with blank words lists every conversation instead
        raise click.UsageError("nothing to search for: WORDS are blank")
    with _opened(url, api_key) as store:
        page = store.search(query, limit)
    if not page.items:
        click.echo("no conversation matches", err=True)
    for hit in page.items:
        click.echo(f"{_line(hit.conversation)}  {_title(hit.conversation)}")
        click.echo(f"    {' '.join(hit.snippet.split())}")


@history.command()
@click.argument("conversation_id", metavar="[ID]", required=False)
@click.option("--format", "as_format", type=click.Choice(["json", "md"]), default="json", show_default=True,
              help="json: jisu's format, every branch, to import again; md: the active branch, to read.")
@server_options
@reports_user_errors
def export(conversation_id, as_format, url, api_key):
    """Write conversation ID, or all of them, to stdout: jisu history export > all.json"""
    if as_format == "md" and conversation_id is None:
        raise click.UsageError("--format md writes one conversation: give its ID")
    with _opened(url, api_key) as store:
        text = store.export_markdown(conversation_id) if as_format == "md" else store.export_json(conversation_id)
    click.echo(text)


@history.command("import")
@click.argument("file", type=click.File("rb"))
@server_options
@reports_user_errors
def import_command(file, url, api_key):
    """Add the conversations in FILE (- reads stdin): jisu's JSON export, or ChatGPT's
    conversations.json. Those already here are skipped; the new ids are printed."""
    data = file.read()
    with _opened(url, api_key) as store:
        result = store.import_file(data)
    for conversation_id in result.imported:
        click.echo(conversation_id)
    skipped = f", {result.skipped} already here" if result.skipped else ""
    click.echo(f"imported {len(result.imported)} conversation(s){skipped}", err=True)


@history.command()
@click.argument("conversation_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
@server_options
@reports_user_errors
def rm(conversation_id, yes, url, api_key):
    """Delete conversation ID, every branch of it. On a terminal it asks first."""
    with _opened(url, api_key) as store:
        if not yes and sys.stdin.isatty():  # read only to be named in the question: delete says an unknown id
            conversation = store.conversation(conversation_id)
            if not click.confirm(f"Delete «{_title(conversation)}» ({_messages(len(conversation.messages))})?",
                                 err=True):
                raise RuntimeFailure("nothing deleted")
        store.delete(conversation_id)
    click.echo(f"deleted {conversation_id}", err=True)


def _line(summary: ConversationSummary) -> str:
    return f"{summary.id}  {_date(summary.updated_at)}"


def _title(summary: ConversationSummary) -> str:
    return summary.title or "(untitled)"


def _messages(count: int) -> str:
    return f"{count} message{'' if count == 1 else 's'}"


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")  # the user's own time zone


def _heading(message: Message) -> str:
    parts = [message.role]
    if message.siblings.count > 1:  # the page shows the others ("‹ 2/3 ›")
        parts.append(f"version {message.siblings.index + 1} of {message.siblings.count}")
    return " · ".join([*parts, *answer_figures(message)])
