"""Optional dependencies: a feature whose extra is not installed fails with one line naming the extra.

A module that needs an extra imports it as::

    try:
        import starlette
    except ImportError as error:
        raise MissingExtraError("server", "the local IonQ server", error) from error
"""

from __future__ import annotations


class MissingExtraError(ImportError):
    """A feature's optional dependencies are not installed; the message names the extra that installs them.

    Args:
        extra: the ``pyproject.toml`` extra (``"server"``, ``"dask"``, ``"torch"``).
        feature: what the user asked for, as the message names it.
        error: the failed import.
    """

    def __init__(self, extra: str, feature: str, error: ImportError) -> None:
        missing = error.name or str(error)
        super().__init__(f"{feature} needs {missing}, which is not installed: pip install 'qsim-core[{extra}]'",
                         name=error.name)
        self.extra = extra
