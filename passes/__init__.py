"""edgec's optimization passes, one file per pass or close family; importing registers them."""

from . import dce, fold_constants  # noqa: F401
