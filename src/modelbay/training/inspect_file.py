"""Read an uploaded dataset in a process of its own: ``python -m modelbay.training.inspect_file``.

The frontend never parses uploads itself (pandas, pyarrow and Pillow stay out of it, and a
hostile file costs this process, not the server). Prints one JSON object: ``{"format",
"filename", "schema"}``, or ``{"error", "status", "param"}`` for a dataset that cannot be
used. With ``--sample NAME`` it first writes scikit-learn's bundled dataset NAME into
``--out`` and reads that.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelbay.training.inspect_file")
    parser.add_argument("path", nargs="?")
    parser.add_argument("--filename", help="the name the file was uploaded as")
    parser.add_argument("--format")
    parser.add_argument("--sample")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    from modelbay.errors import ModelbayError
    from modelbay.training import datasets

    answer: dict[str, object]
    try:
        if args.sample:
            path = datasets.write_sample(args.sample, Path(args.out))
            filename = path.name
        else:
            path = Path(args.path)
            filename = args.filename or path.name
        fmt = datasets.detect_format(filename, args.format)
        schema = datasets.inspect(path, fmt)
        answer = {"format": fmt, "filename": filename, "path": str(path), "schema": schema}
    except ModelbayError as exc:
        answer = {"error": exc.message, "status": exc.status, "param": exc.param}
    sys.stdout.write(json.dumps(answer, default=_plain))
    return 0


def _plain(value: object) -> object:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
