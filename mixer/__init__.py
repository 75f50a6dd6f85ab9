"""mixer: build, audit and extend instruction-tuning mixtures such as Tulu V2."""

__version__ = "0.1.0"
