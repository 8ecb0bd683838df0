"""The kickstart gate: flatten %include trees with a line map, validate with pykickstart, lint policy."""
