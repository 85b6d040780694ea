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


def chromium() -> None:
    """The browser tests drive Debian's chromium: install it when missing and we may (root with apt-get);
    otherwise they skip, saying why."""
    if shutil.which("chromium") or not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    print("Installing Debian's chromium for the browser tests", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "update", "-q"], **quiet).returncode == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], **quiet)


def main() -> int:
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    if kind not in REQUIREMENTS:
        print(__doc__)
        return 2
    python = environment(kind)
    if kind == "app":
        command = [python, "-m", "streamlit", "run", "explorer.py", *sys.argv[2:]]
    else:
        chromium()
        command = [python, "-m", "pytest", "-q", *sys.argv[2:]]
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())
