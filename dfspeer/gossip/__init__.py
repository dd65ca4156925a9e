"""dfspeer.gossip."""
