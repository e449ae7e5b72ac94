from . import algorithms, backbones, generators, heads, necks, tokenizers  # noqa: F401
from .data_preprocessors import CIMDataPreprocessor  # noqa: F401
from .algorithms import CIM  # noqa: F401
