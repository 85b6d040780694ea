"""On-disk cache for long computations (rankings, AM images, ...).

An entry is keyed by a dict (checkpoint content hash, data split, layer, method, parameters),
stored as one ``.npz`` of arrays plus JSON metadata. Writes are atomic (temp file + rename);
an unreadable entry is treated as missing and recomputed. Set NRE_CACHE_DIR to move it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import weakref
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

Entry = tuple[dict[str, np.ndarray], dict[str, Any]]  # (arrays, JSON-able metadata)


def cache_dir() -> Path:
    return Path(os.environ.get("NRE_CACHE_DIR", Path.home() / ".cache" / "neuron-ranking-explorer"))


def entry_path(kind: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return cache_dir() / kind / f"{digest}.npz"


def load_entry(kind: str, key: dict) -> Entry | None:
    path = entry_path(kind, key)
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files if name != "__meta__"}
            meta = json.loads(str(stored["__meta__"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError):
        return None  # missing or corrupt: recompute
    return arrays, meta


def save_entry(kind: str, key: dict, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    path = entry_path(kind, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, __meta__=np.array(json.dumps(meta, default=str)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cached(kind: str, key: dict, compute: Callable[[], Entry], refresh: bool = False) -> Entry:
    """Return the stored entry for ``key`` or compute, store and return it.

    Computed once per process: callers asking for the same entry at the same time (thirty students
    opening one link) wait for the first one's result instead of each computing it (``COMPUTED`` counts
    the computations per kind). A first caller that fails or is cancelled lets the next one compute."""
    with _key_lock(entry_path(kind, key)):
        if not refresh:
            hit = load_entry(kind, key)
            if hit is not None:
                return hit
        arrays, meta = compute()
        save_entry(kind, key, arrays, meta)
        with _LOCKS_GUARD:
            COMPUTED[kind] += 1
        return arrays, meta


def cached_entry(kind: str, key: dict, compute: Callable[[], Entry]) -> tuple[dict, dict, bool]:
    """``cached``, and whether the entry came from the store (False: this call computed it)."""
    computed = []

    def note() -> Entry:
        computed.append(True)
        return compute()
    arrays, meta = cached(kind, key, note)
    return arrays, meta, not computed


COMPUTED: Counter[str] = Counter()  # entries computed (not loaded) by this process, per kind
_LOCKS: "weakref.WeakValueDictionary[Path, threading.Lock]" = weakref.WeakValueDictionary()
_LOCKS_GUARD = threading.Lock()


def _key_lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(path)
        if lock is None:
            lock = _LOCKS[path] = threading.Lock()
        return lock
