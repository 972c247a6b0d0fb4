"""``python -m kvcheck`` runs the command line."""

from kvcheck.cli import main

main()
