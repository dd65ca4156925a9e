"""dfspeer.ring."""
