"""Small argument checks shared by the public entry points (private)."""

import numpy as np

MAX_ELEMENTS = 2**31 - 1  # per array: XLA indexes with int32 on some backends, and aborts past it
MAX_EPOCHS = 2**31 - 1  # the loop counts epochs and steps in int32


def positive_int(value, name: str, upper: int | None = None) -> int:
    """``value`` as an int in ``[1, upper]``; TypeError or ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1 or (upper is not None and value > upper):
        bound = f"in [1, {upper}]" if upper is not None else ">= 1"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def check_elements(count: int, what: str) -> None:
    """Raises before an array of ``count`` elements is made that XLA could not index."""
    if count > MAX_ELEMENTS:
        raise ValueError(f"{what} is more than {MAX_ELEMENTS} elements in one array")


DISTRIBUTION = "jaxnn-mlp"  # the name on the package index; "jaxnn" there is another project


def install_hint(extra: str) -> str:
    """The command that installs jaxnn's optional ``extra`` (never ``jaxnn[...]``)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
