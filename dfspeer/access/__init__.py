"""dfspeer.access: who may do what on the native API.

- :mod:`.credentials`: the ``Authorization: Bearer`` header, key ids, secrets, the admin
  token (pure);
- :mod:`.principals`: admin, access key, open (``--insecure``);
- :mod:`.permissions`: actions, bucket grants and :func:`~.permissions.decide` (pure);
- :mod:`.routes`: the route -> action table;
- :mod:`.sealing`: access key secrets sealed under a subkey of the cluster key;
- :mod:`.keystore`: :class:`~.keystore.KeyService`, keys over the replicated ``keys`` table;
- :mod:`.jwt_auth`: JWT bearer tokens (ES256 / RS256) acting as the access key of their
  ``sub``;
- :mod:`.jwks_url`: JWT keys fetched from an identity provider's JWKS URL, cached;
- :mod:`.share`: presigned share links (``GET`` / ``HEAD`` of one object, or of one pinned
  version, until they expire);
- :mod:`.middleware`: :class:`~.middleware.AccessControl`, the aiohttp middleware;
- :mod:`.cache`: key and bucket reads reused for ``auth_cache_ttl_s`` (1 s by default);
- :mod:`.audit`: the audit log, one JSON line per mutating or refused request.
"""
