"""The numba cache folder follows the kernels' source, so an edited kernel is recompiled."""

import shutil
from pathlib import Path

import numba

from engine import compile_cache


def test_the_cache_folder_is_named_after_the_current_source(monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/cache-root")
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    folder = compile_cache.configure()
    assert folder == f"/cache-root/kernels-{compile_cache.kernel_source_digest()}"
    assert numba.config.CACHE_DIR == folder


def test_any_change_to_any_module_changes_the_digest(tmp_path, monkeypatch):
    copy = tmp_path / "engine"
    shutil.copytree(compile_cache.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "journal"))
    monkeypatch.setattr(compile_cache, "PACKAGE_DIR", copy)
    before = compile_cache.kernel_source_digest()
    assert compile_cache.kernel_source_digest() == before  # deterministic
    matching = Path(copy, "matching.py")
    matching.write_text(matching.read_text() + "\n# an edit\n")
    assert compile_cache.kernel_source_digest() != before
