"""A GPU worker process: `python -m fanren.executors.worker`, one per GPU, started by ProcessSlots.

It reads length-prefixed pickles on stdin: ("engines", specs) once, then ("run", request) per job,
and answers ("progress", fraction, message)* then ("done", reply) on stdout. Its engines stay
loaded between jobs (one GPU model at a time); CUDA_VISIBLE_DEVICES was set by the parent.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..errors import FanrenError


def fault_injection(node_id: str) -> None:
    """Tests only: FANREN_TEST_WORKER_EXIT="<node id>=<marker file>" makes the first worker that runs
    that node die mid-node (after its engine loaded), once: the marker file remembers it happened."""
    spec = os.environ.get("FANREN_TEST_WORKER_EXIT", "")
    target, _, marker = spec.partition("=")
    if target and target == node_id and marker and not Path(marker).exists():
        Path(marker).write_text(f"{os.getpid()}\n")
        os._exit(17)


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FanrenError) else f"{type(exc).__name__}: {exc}"


def main() -> None:
    from .local import EnginePool, build_engines, receive, run_engine, send

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything an engine prints goes to the log, not into the pipe
    pool: EnginePool | None = None
    while True:
        try:
            kind, payload = receive(stdin)
        except EOFError:
            break
        if kind == "exit":
            break
        if kind == "engines":
            pool = EnginePool(build_engines(payload))
            continue
        assert pool is not None
        request: dict[str, Any] = payload
        started = time.monotonic()
        reply: dict[str, Any] = {}
        try:
            pool.get(request["family"])
            fault_injection(request["node_id"])

            def progress(fraction: float, message: str) -> None:
                send(stdout, ("progress", fraction, message))

            files = run_engine(pool, request["family"], request["node_id"], request["kind"], request["params"],
                               request["inputs"], request["sources"], request["out_dir"], progress)
            reply["files"] = {name: str(path) for name, path in files.items()}
        except Exception as exc:  # noqa: BLE001 - the scheduler reports it as the node's failure
            reply["error"] = describe(exc)
            reply["trace"] = traceback.format_exc()
        reply["loads"] = pool.loads()
        reply["seconds"] = time.monotonic() - started
        send(stdout, ("done", reply))
    if pool is not None:
        pool.unload_all()


if __name__ == "__main__":
    main()
