"""The local development network: real peers on loopback, for tests and ``drimbox demo``.

One module per job, imported directly (this package imports nothing, so ``import drimbox`` stays
cheap and servers are only pulled in by code that runs them):

- :mod:`~drimbox.devnet.ports` -- free ports, waiting for a listener;
- :mod:`~drimbox.devnet.process` -- child servers in their own process group, parallel stop;
- :mod:`~drimbox.devnet.dcmtk` -- DCMTK binaries (not pynetdicom's same-named scripts), ``TCP_NODELAY``;
- :mod:`~drimbox.devnet.orthanc` -- a real Orthanc + DICOMweb plugin as a site PACS;
- :mod:`~drimbox.devnet.dcmqrscp` -- DCMTK's strict Q/R archive as a second PACS;
- :mod:`~drimbox.devnet.pki` -- a test CA issuing TLS certificates and signing keys;
- :mod:`~drimbox.devnet.network` -- the whole demo network (registry + two sites).
"""
