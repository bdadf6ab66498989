"""``python -m probe ...`` runs the command-line interface."""

from probe.cli import main

raise SystemExit(main())
