"""Subcommands of the ``dfspeer`` CLI; each module has ``register(subparsers)``."""
