"""dfspeer.access: who may do what on the native API.

- :mod:`.credentials`: the ``Authorization: Bearer`` header, key ids, secrets, the admin
  token (pure);
- :mod:`.principals`: admin, access key, open (``--insecure``);
- :mod:`.permissions`: actions, bucket grants and :func:`~.permissions.decide` (pure);
- :mod:`.routes`: the route -> action table;
- :mod:`.sealing`: access key secrets sealed under a subkey of the cluster key;
- :mod:`.keystore`: :class:`~.keystore.KeyService`, keys over the replicated ``keys`` table;
- :mod:`.middleware`: :class:`~.middleware.AccessControl`, the aiohttp middleware.
"""
