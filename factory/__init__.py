"""The image factory: spec -> validate -> media -> install -> verify -> seal -> export -> promote."""

__version__ = "0.1.0"
