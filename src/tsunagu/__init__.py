"""tsunagu — open-source Customer Experience Management."""

__version__ = "0.1.0"
