"""``python -m drimbox`` runs the command line."""

from drimbox.cli import main

main()
