"""The compose deployment (docker-compose.yml, deploy/) started for real: needs a Docker engine."""
