"""The S3 API: its own aiohttp sub-app on its own port (``s3_port``).

Layout: :mod:`.service` (app, router, error middleware, :class:`S3Site`), :mod:`.auth`
(SigV4), :mod:`.credentials` (where secrets come from), :mod:`.errors` (the one
DfsError -> S3 XML mapping), :mod:`.xml`, :mod:`.body` (payload checks), :mod:`.chunked`
(``aws-chunked`` streaming bodies), :mod:`.payload` (object bodies decoded, MD5 and
checksums), and one module per operation family: :mod:`.buckets`, :mod:`.objects`,
:mod:`.listing`, :mod:`.multipart` (on :mod:`dfspeer.objects.multipart`), :mod:`.copy`.
:func:`dfspeer.api.s3.service.s3_site` builds the site a peer starts.
"""

from __future__ import annotations
