#!/usr/bin/env python3
"""Install everything and run the app or the tests — needs only Python >= 3.10.

    python3 tasks.py app     # install into a virtual environment, then `streamlit run explorer.py`
    python3 tasks.py test    # install (with test tools), then run the whole test suite

The virtual environment is ./.venv, or the folder named by NRE_VENV. Installation is skipped
when the requirements have not changed since the last one (their hash is stored in the venv).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REQUIREMENTS = {"app": ROOT / "requirements.txt", "test": ROOT / "requirements-dev.txt"}


def environment(kind: str) -> Path:
    """A virtual environment with the requirements for ``kind`` installed; returns its python."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python >= 3.10 is needed, this is {sys.version.split()[0]}")
    folder = Path(os.environ.get("NRE_VENV", ROOT / ".venv")).expanduser()
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        print(f"Creating a virtual environment in {folder}", flush=True)
        venv.EnvBuilder(with_pip=True, symlinks=os.name != "nt").create(folder)
    wanted = hashlib.sha256(b"".join(p.read_bytes() for p in REQUIREMENTS.values())).hexdigest()
    marker = folder / f".installed-{kind}"
    if not marker.exists() or marker.read_text() != wanted:
        print(f"Installing {REQUIREMENTS[kind].name} (the first time takes a few minutes)", flush=True)
        subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                        "-r", REQUIREMENTS[kind]], check=True, cwd=ROOT)
        marker.write_text(wanted)
    return python


def _may_apt() -> bool:
    return bool(shutil.which("apt-get")) and hasattr(os, "geteuid") and os.geteuid() == 0


def _apt_install(*packages: str) -> None:
    """apt-get install Debian packages, quietly (call it when ``_may_apt()``)."""
    quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "update", "-q"], **quiet).returncode == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", *packages], **quiet)


def chromium() -> None:
    """The browser tests drive Debian's chromium: install it when missing and we may (root with apt-get);
    otherwise they skip, saying why."""
    if shutil.which("chromium") or not _may_apt():
        return
    print("Installing Debian's chromium for the browser tests", flush=True)
    _apt_install("chromium")


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def fashion_mnist() -> None:
    """The full Fashion-MNIST (60,000 + 10,000 images, MIT): Debian's dataset-fashion-mnist puts the
    original idx.gz files in /usr/share/datasets/fashion-mnist, where the app finds them. Installed
    when missing and we may (root with apt-get); without it the embedded subset is used and the tests
    that need the full set skip, saying why."""
    if (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file() or not _may_apt():
        return
    print("Installing Debian's dataset-fashion-mnist (the full Fashion-MNIST, 30 MB)", flush=True)
    _apt_install("dataset-fashion-mnist")


def main() -> int:
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    if kind not in REQUIREMENTS:
        print(__doc__)
        return 2
    python = environment(kind)
    fashion_mnist()
    if kind == "app":
        command = [python, "-m", "streamlit", "run", "explorer.py", *sys.argv[2:]]
    else:
        chromium()
        command = [python, "-m", "pytest", "-q", *sys.argv[2:]]
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())
