"""``modelbay chat``: talk to a language model in the terminal, its answers streamed."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelbay.cli._session import connect, console, err_console
from modelbay.client import Client

_QUIT = frozenset({"/exit", "/quit", "/bye"})


def register(app: typer.Typer) -> None:
    """Add ``chat`` to the root CLI."""
    app.command()(chat)


def chat(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="NAME[:VERSION|@ALIAS]")],
    system: Annotated[str | None, typer.Option(help="A system prompt")] = None,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Ask this once, print, and exit")
    ] = None,
    temperature: Annotated[float, typer.Option(min=0, max=2)] = 0.7,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Per answer")] = 512,
    seed: Annotated[int | None, typer.Option(help="For reproducible answers")] = None,
) -> None:
    """Chat with an LLM (streaming); /exit, Ctrl-D or Ctrl-C ends it."""
    history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    params = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    with connect(ctx) as client:
        if message is not None:
            history.append({"role": "user", "content": message})
            _answer(client, model, history, params)
            return
        err_console.print(f"[dim]chatting with {model}; /exit or Ctrl-D to end[/]")
        while True:
            try:
                line = console.input("[bold cyan]you>[/] ")
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if line.strip() in _QUIT:
                return
            if not line.strip():
                continue
            history.append({"role": "user", "content": line})
            console.print("[bold green]model>[/] ", end="")
            try:
                history.append(
                    {"role": "assistant", "content": _answer(client, model, history, params)}
                )
            except KeyboardInterrupt:
                console.print("[dim](stopped)[/]")
                history.pop()


def _answer(
    client: Client, model: str, history: list[dict[str, Any]], params: dict[str, Any]
) -> str:
    """Print the answer as it streams; return it whole."""
    given = {k: v for k, v in params.items() if v is not None}
    parts: list[str] = []
    usage = None
    for chunk in client.chat_stream(model, history, **given):
        for choice in chunk["choices"]:
            text = choice["delta"].get("content") or ""
            parts.append(text)
            console.out(text, end="", highlight=False)
        usage = chunk.get("usage") or usage
    console.out("")
    if usage:
        err_console.print(
            f"[dim]{usage['prompt_tokens']} prompt + {usage['completion_tokens']} "
            "completion tokens[/]"
        )
    return "".join(parts)
