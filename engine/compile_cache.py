"""Where numba keeps the compiled kernels, keyed by the kernels' source.

numba's cache checks only the modification stamp of the file that defines a function, yet
a kernel's machine code also contains every kernel it calls or inlines from other modules.
After an edit to ``engine/matching.py`` the cached ``apply_kernel`` of ``engine/kernel.py``
would still run the old matching code. So the cache lives in a folder named after a digest
of every module of this package: any change to any of them selects a fresh folder.

The folder is under ``NUMBA_CACHE_DIR`` when that is set (CI sets a fresh one), otherwise
under this package's ``__pycache__``. This reads the package's own source files once at
import; it is build configuration, not engine state, and nothing here affects results.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba

PACKAGE_DIR = Path(__file__).resolve().parent


def kernel_source_digest() -> str:
    """BLAKE2b of the names and contents of the package's modules, in sorted order."""
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def configure() -> str:
    """Point numba's cache at the folder for the current kernel sources; returns it."""
    base = os.environ.get("NUMBA_CACHE_DIR") or str(PACKAGE_DIR / "__pycache__")
    folder = os.path.join(base, f"kernels-{kernel_source_digest()}")
    numba.config.CACHE_DIR = folder
    return folder
