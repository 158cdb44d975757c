"""``python -m modelbay`` runs the CLI."""

from modelbay.cli import main

main()
