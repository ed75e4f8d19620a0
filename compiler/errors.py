"""Errors that reach the user: one message, what is wrong and what to do, an exit status.

Every error edgec raises on bad input is an `EdgecError`. The CLI prints its message and
exits with its `exit_code`; only `--debug` shows a traceback. Anything else escaping is a bug.
"""


class EdgecError(Exception):
    """Bad input or a missing tool: the message says what is wrong and what to do."""

    exit_code = 2


class ModelError(EdgecError):
    """The model file cannot be read or is not a valid ONNX graph."""


class UnsupportedError(EdgecError):
    """The model uses ops, attributes or dtypes edgec does not support."""


class ShapeError(EdgecError):
    """A shape is dynamic without a value, or shapes do not agree."""


class InputError(EdgecError):
    """Run-time inputs do not match the model's inputs (names, shapes, dtypes)."""


class VerifyError(EdgecError):
    """The IR breaks an invariant; the message names the node and its ONNX origin."""


class PassError(EdgecError):
    """A pass failed; the message names the pass, the pipeline before it and the reproducer."""


class ToolError(EdgecError):
    """An external tool (cross compiler, qemu, nvcc) is missing or failed."""


def did_you_mean(name: str, known) -> str:
    """' (did you mean 'x'?)' for the closest of `known` to a misspelt `name`, else ''."""
    import difflib
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
