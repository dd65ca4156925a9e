"""dfspeer.blockstore."""
