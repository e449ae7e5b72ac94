from .beit_generator import BEiTGenerator, gumbel_max_sample  # noqa: F401
