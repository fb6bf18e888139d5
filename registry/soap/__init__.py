"""SOAP 1.2 plumbing: secure XML parsing, MTOM/XOP, envelopes, WS-Addressing, faults."""
