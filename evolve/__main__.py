"""``python -m evolve`` runs the CLI."""

from evolve.cli import main

main()
