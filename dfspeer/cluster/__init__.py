"""dfspeer.cluster."""
