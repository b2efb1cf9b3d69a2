"""Programs that a sweep runs as written, end to end (see examples/keydoor)."""
