"""Wire protocols as pure codecs: bytes on the wire <-> numpy arrays and plain types."""
