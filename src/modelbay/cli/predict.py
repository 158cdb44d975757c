"""``modelbay predict``: run a model version on a JSON input file, print JSON outputs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from modelbay.cli._session import REF_METAVAR, connect, echo_json, fail, parse_ref
from modelbay.client import ModelRef, outputs_to_json, parse_input_document


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the root CLI."""
    app.command()(predict)


def predict(
    ctx: typer.Context,
    ref: Annotated[ModelRef, typer.Argument(parser=parse_ref, metavar=REF_METAVAR)],
    input_file: Annotated[
        typer.FileText,
        typer.Option(
            "--input",
            "-i",
            help='JSON file ("-": stdin): a V2 request {"inputs": [...]} or {"input name": [...]}',
        ),
    ],
    output: Annotated[
        list[str] | None, typer.Option("--output", "-o", help="Output to return, repeatable")
    ] = None,
) -> None:
    """Run a model version (default: latest) on an input file; prints {output: nested list}."""
    try:
        doc = json.load(input_file)
    except json.JSONDecodeError as exc:
        fail(f"{input_file.name} is not valid JSON: {exc}")
    with connect(ctx) as client:
        parsed = parse_input_document(doc, lambda: client.model_metadata(ref.name, ref.version))
        outputs = client.predict(
            ref.name, parsed.inputs, version=ref.version, outputs=output or parsed.outputs
        )
    echo_json(outputs_to_json(outputs), indent=None)
