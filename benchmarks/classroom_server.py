"""``streamlit run`` with the server-side duration of every script run written to a log: the server side of
the browser classroom benchmark (benchmarks/bench_classroom_browser.py), apart from the browsers.

    python benchmarks/classroom_server.py run explorer.py [streamlit options]   # log: $NRE_RUN_LOG

The app is unchanged: the only addition is a wrapper around Streamlit's ``ScriptRunner._run_script`` (one
call per script run of a session: a page's full run, or a fragment's rerun such as a Live toggles click) that
appends a JSON line ``{"session", "start", "seconds", "fragment", "auto"}`` to the log when the run ends
(``start`` is ``time.time()``; ``auto`` is a fragment's own timer, e.g. the Compress page's job panel). The
first line is ``{"pid"}``, the server's process id (the benchmark reads its CPU time).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time


def install(path: str) -> None:
    """Wrap ``ScriptRunner._run_script`` so that each run's duration is appended to ``path``."""
    from streamlit.runtime.scriptrunner import script_runner

    lock = threading.Lock()
    with open(path, "a") as log:
        log.write(json.dumps({"pid": os.getpid()}) + "\n")
    run = script_runner.ScriptRunner._run_script

    def timed(self, rerun_data) -> None:
        start, began = time.time(), time.perf_counter()
        try:
            run(self, rerun_data)
        finally:
            line = {"session": self._session_id, "start": start, "seconds": time.perf_counter() - began,
                    "fragment": bool(rerun_data.fragment_id_queue), "auto": bool(rerun_data.is_auto_rerun)}
            with lock, open(path, "a") as log:
                log.write(json.dumps(line) + "\n")

    script_runner.ScriptRunner._run_script = timed


if __name__ == "__main__":
    install(os.environ["NRE_RUN_LOG"])
    from streamlit.web.cli import main

    sys.argv = ["streamlit", *sys.argv[1:]]
    main(prog_name="streamlit")
