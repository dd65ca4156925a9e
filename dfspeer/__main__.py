"""``python -m dfspeer`` runs the CLI."""

from dfspeer.cli import main

raise SystemExit(main())
