"""dfspeer.api."""
