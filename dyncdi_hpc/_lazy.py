"""Lazy re-exports for package __init__ modules: `from dyncdi_hpc import Store` imports the
store's module on first use, so `import dyncdi_hpc` (and the CLI) stays cheap; the names are
still listed in __all__ and dir(), and type checkers see them through TYPE_CHECKING imports."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for a package whose public names live in submodules.

    exports: public name -> the module (relative to package, e.g. '.store.zarr_store') that
    defines it.
    """

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
