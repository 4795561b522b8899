"""`python -m stethoscope` runs the CLI."""

from stethoscope.cli import main

main()
