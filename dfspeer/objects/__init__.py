"""dfspeer.objects."""
