"""The parts of :class:`~dfspeer.config.PeerConfig` beyond its fields.

:mod:`dfspeer.config` holds the settings dataclass itself and stays the one place to import
it (and :class:`~dfspeer.config.ConfigError`) from; this package holds what it is built of:

* :mod:`.errors`: :class:`ConfigError` and the size units ``MiB`` / ``GiB``;
* :mod:`.fieldtypes`: a field's type check and the coercion of TOML / env / CLI text to it;
* :mod:`.sources`: reading the TOML file and the ``DFSPEER_*`` environment variables;
* :mod:`.checks`: the range and consistency rule of every setting, in :func:`check_settings`;
* :mod:`.security`: the JWT, TLS, audit log and auth cache rules;
* :mod:`.addresses`: ``host:port`` parsing and loopback hosts.
"""
