"""facerec: deep face recognition in PyTorch.

Subpackages: data, align, models, heads, train, eval, serve. The command line is `facerec`
(`facerec.cli`); the typed run configuration is `facerec.config.Config`.
"""

__version__ = "0.1.0"
