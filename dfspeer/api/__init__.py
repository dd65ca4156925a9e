"""dfspeer.api: the aiohttp applications of a peer.

- :mod:`dfspeer.api.app`: ``build_app`` composes the public application;
- :mod:`dfspeer.api.public`: ``/v1/objects/...`` (upload, ranged download, list, delete);
  its request fields, upload body and download answer are in :mod:`dfspeer.api.public_fields`,
  :mod:`dfspeer.api.public_body` and :mod:`dfspeer.api.public_download`;
- :mod:`dfspeer.api.cluster_routes`: ``/v1/cluster/...``, ``/health``, ``/ready``, ``/metrics``;
- :mod:`dfspeer.api.middleware`: request ids and the one error shape;
- :mod:`dfspeer.api.ranges`: ``Range`` / ``If-None-Match`` rules;
- :mod:`dfspeer.api.metrics`: Prometheus metrics of one peer;
- :mod:`dfspeer.api.internal`: the peer RPC sub-app under ``/internal/``.

Nothing is imported here, so importing one submodule stays cheap and cycle-free.
"""
