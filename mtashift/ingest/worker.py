"""Large ingests run in child processes tuned for them: a large PowerMTA file, and a large batch of KumoMTA files.

The PowerMTA reader spreads a file's blocks over its own threads, one block per thread at a time. In a
process set up for everything else, polars also spreads each single operation over its thread pool, and its
allocator (jemalloc) hands the pages of every freed block back to the kernel, to fault them in afresh for
the next block. A child started with polars single-threaded and the allocators keeping freed pages does the
same work with less CPU (5M-row benchmark file, 2 cores: ~29 vs ~34 CPU seconds on a busy host, 5-10 % less
on a quiet one), and gives all its memory back when it exits. Starting the interpreter and importing the
stack costs ~0.6 s, so only files above ``WORKER_MIN_BYTES`` (of decompressed text, estimated) go to a worker.
A large KumoMTA batch is split over two such children, each reading its files one at a time on one thread
(see ``mtashift.ingest.run.ingest_kumo_batch``).

Protocol: the request (kind and keyword arguments, JSON) on the child's stdin; the reply on its stdout, one
line after ``RESULT_MARK``: the ingest function's result, or the exception's type and whole message. Any
failure is raised in the parent as ``WorkerError``: the child's exception (so a broken file is reported as
an in-process one would be), the signal that killed it, or else its exit status and last stderr line. A
child that succeeds passes its stderr (warnings) on to the parent's.

Stopping (POSIX): a caller interrupted while it waits (a terminated Dagster run raises in the step's main
thread) stops the children it started before the interrupt goes on: SIGTERM, then SIGKILL after
``STOP_GRACE_SECONDS``. A child whose parent dies without doing so (killed outright) notices within
``PARENT_POLL_SECONDS`` and stops itself the same way. Children ignore SIGINT: Ctrl-C reaches the whole
process group, and stopping them is the parent's decision. SIGTERM only marks a working child as stopping; the
readers check the mark between the blocks of a file and between files (:func:`raise_if_stopping`) and
unwind from there, so the temporary files are removed and nothing half-written is renamed into place. An
exception raised by the signal handler itself could land anywhere: inside DuckDB or polars, which turn it
into an ordinary error (one failed file), or inside a writer's clean-up.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

WORKER_MIN_BYTES = 512 * 2**20
GZIP_RATIO = (
    8  # accounting CSV compresses about this well: a .gz's work is estimated from its size times this
)
WORKER_ENV = {
    "POLARS_MAX_THREADS": "1",
    # Every allocator in the process keeps the pages it frees, so the next batch reuses them instead of
    # faulting in fresh zeroed ones (a KumoMTA segment read single-threaded: ~65k page faults and ~0.25 s of
    # system time without, ~14k and ~0.08 s with; ~10 % less CPU in all). The child is short-lived, and
    # gives everything back when it exits.
    # tikv-jemallocator (polars' allocator) reads its options from this variable at start-up
    "_RJEM_MALLOC_CONF": "background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1",
    # mimalloc (pyarrow's default pool)
    "MIMALLOC_PURGE_DELAY": "-1",
    # glibc (Python's buffers): blocks up to 32 MiB (the largest threshold it accepts) from the heap, never trimmed
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30),
    "MALLOC_TOP_PAD_": str(256 * 2**20),
    # numpy's BLAS threads otherwise spin after the rare numpy call that wakes them (~1.5 % of the CPU)
    "OPENBLAS_NUM_THREADS": "1",
}


PARENT_ENV = "MTASHIFT_WORKER_PARENT"  # the parent's pid, which the child watches
PARENT_POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 5.0  # how long a stopped child may take to remove its temporary files before SIGKILL
RESULT_MARK = "mtashift-worker-reply "  # the reply line on the child's stdout; anything else there is ignored


class WorkerError(RuntimeError):
    """The child process failed: its exception, the signal that killed it, or why it could not start."""


def wants_worker(path: Path, *, min_bytes: int | None = None) -> bool:
    """Whether ``path`` is large enough for the worker's saving to outweigh its start-up."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return False  # the in-process reader reports the missing file
    if path.name.endswith(".gz"):
        size *= GZIP_RATIO
    return size >= (WORKER_MIN_BYTES if min_bytes is None else min_bytes)


def run_in_worker(kind: str, **kwargs: Any) -> Any:
    """Run the in-process ingest of ``kind`` in a tuned child process; its result (JSON values)."""
    request = json.dumps({"kind": kind, "kwargs": {k: _encode(v) for k, v in kwargs.items()}})
    where = _where(kind, kwargs)
    try:
        proc = _spawn([sys.executable, "-m", "mtashift.ingest.worker"], input=request)
    except OSError as exc:  # no process to start (out of memory or processes)
        raise WorkerError(f"{where}: could not start: {type(exc).__name__}: {exc}") from exc
    reply = next(
        (_reply(line) for line in reversed(proc.stdout.splitlines()) if line.startswith(RESULT_MARK)), None
    )
    if reply is not None and "error" in reply:
        raise WorkerError(f"{where}: {reply['error']}: {reply['message']}")
    if proc.returncode < 0:  # killed: most likely by the kernel for want of memory
        raise WorkerError(f"{where}: killed by {signal.Signals(-proc.returncode).name}")
    if proc.returncode != 0 or reply is None:
        errors = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        detail = errors[-1] if errors else "no output"
        raise WorkerError(f"{where}: exit status {proc.returncode}: {detail}")
    if proc.stderr.strip():
        sys.stderr.write(proc.stderr)
    return reply["result"]


_LIVE: dict[subprocess.Popen[str], threading.Event] = {}  # running children of run_in_workers -> its stop
_LIVE_LOCK = threading.Lock()
_CALL = threading.local()  # the stop event of the run_in_workers call a pool thread works for


def _spawn(args: list[str], *, input: str) -> subprocess.CompletedProcess[str]:
    """Run one child to its end with ``input`` on its stdin. Interrupted here (in the thread that waits for it),
    it stops the child before the interrupt goes on; a child of a :func:`run_in_workers` call that is being
    stopped is stopped at once, however late it started."""
    stop = getattr(_CALL, "stop", None)
    with subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",  # a native library's stray bytes on stderr must not hide the child's outcome
        env={**os.environ, **WORKER_ENV, PARENT_ENV: str(os.getpid())},
    ) as proc:
        if stop is not None:
            with _LIVE_LOCK:
                _LIVE[proc] = stop
                stopping = stop.is_set()
            if stopping:
                _stop([proc])
        try:
            stdout, stderr = proc.communicate(input)
        except BaseException:
            _stop([proc])
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.pop(proc, None)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _stop_call(stop: threading.Event) -> None:
    """Stop the children of one run_in_workers call, and any it starts from now on."""
    with _LIVE_LOCK:
        stop.set()
        procs = [proc for proc, owner in _LIVE.items() if owner is stop]
    _stop(procs)


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    """SIGTERM, then SIGKILL for those still running after the grace (at once if interrupted meanwhile)."""
    try:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        raise


def _where(kind: str, kwargs: dict[str, Any]) -> str:
    return f"ingest worker for {kwargs.get('rel_path') or f'a {kind} batch'}"


def _reply(line: str) -> dict[str, Any] | None:
    """The reply on a marked line; None when it is not whole JSON (a child cut short while writing it)."""
    try:
        reply = json.loads(line[len(RESULT_MARK) :])
    except ValueError:
        return None
    return reply if isinstance(reply, dict) and ("result" in reply or "error" in reply) else None


def run_in_workers(requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Several :func:`run_in_worker` requests at once, one child process each; each result, or its
    ``WorkerError``, in the order of ``requests``."""

    stop = threading.Event()

    def one(request: tuple[str, dict[str, Any]]) -> Any:
        try:
            return run_in_worker(request[0], **request[1])
        except WorkerError as exc:
            return exc
        except Exception as exc:  # whatever else went wrong with this child is its requests' failure alone
            return WorkerError(f"{_where(*request)}: {type(exc).__name__}: {exc}")

    def pooled(request: tuple[str, dict[str, Any]]) -> Any:
        _CALL.stop = stop
        try:
            return one(request)
        finally:
            _CALL.stop = None

    if len(requests) == 1:
        return [one(requests[0])]
    with ThreadPoolExecutor(max_workers=len(requests), thread_name_prefix="ingest-worker") as pool:
        futures = [pool.submit(pooled, r) for r in requests]
        try:
            return [f.result() for f in futures]
        except BaseException:  # interrupted: the pool's threads end once their children are stopped
            _stop_call(stop)
            raise


def _encode(value: Any) -> Any:
    if isinstance(value, Path):
        return {"__path__": str(value)}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return Path(value["__path__"]) if "__path__" in value else {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def main() -> None:
    _stop_with_parent()  # before the imports, which take a second: Ctrl-C meanwhile is the parent's too
    from mtashift.ingest.run import IN_PROCESS

    request = json.loads(sys.stdin.read())
    _WORKING.set()
    raise_if_stopping()
    importlib.import_module(f"mtashift.ingest.{request['kind']}")
    # the modules imported so far live as long as the process: keep the cyclic collector from walking them on
    # every full collection (the reader allocates many short-lived polars wrappers, so collections are many)
    gc.freeze()
    fn = IN_PROCESS[request["kind"]]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the reply line only
            reply: dict[str, Any] = {"result": fn(**{k: _decode(v) for k, v in request["kwargs"].items()})}
    except Exception as exc:  # reported whole (a multi-line message too), as an in-process failure would be
        reply = {"error": type(exc).__name__, "message": str(exc)}
    raise_if_stopping()  # told to stop after the readers' last check: no reply, the caller is stopping
    sys.stdout.write(RESULT_MARK + json.dumps(reply, default=str) + "\n")
    sys.stdout.flush()
    if "error" in reply:
        sys.exit(1)


_STOPPING = threading.Event()
_WORKING = threading.Event()  # the request is read: from now on a stop waits for the readers' next check


def _terminated(signum: int, _frame: object) -> None:
    _STOPPING.set()
    if not _WORKING.is_set():  # still reading the request: nothing to clean up
        raise SystemExit(128 + signum)


def raise_if_stopping() -> None:
    """Raise SystemExit when this process has been told to stop (a worker child only; checked by the readers
    between the blocks of a file and between the files of a batch)."""
    if _STOPPING.is_set():
        raise SystemExit(128 + signal.SIGTERM)


def _stop_with_parent() -> None:
    """Unwind on SIGTERM, and send it to this process once the parent that started it is gone. Only in a child
    started by :func:`_spawn`, which names its parent."""
    named = os.environ.get(PARENT_ENV)
    if not named or os.name != "posix":
        return
    signal.signal(signal.SIGTERM, _terminated)
    # Ctrl-C reaches the whole process group: the parent, which owns the run, decides and stops its children
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent, first_ppid = int(named), os.getppid()

    def gone() -> bool:
        if os.getppid() != first_ppid:  # reparented: whatever started this process has exited
            return True
        try:
            os.kill(parent, 0)  # the named parent may be above a launcher process that stays
        except OSError:  # no such process (or, pid reused, not ours)
            return True
        return False

    def watch() -> None:
        while not gone():
            time.sleep(PARENT_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_GRACE_SECONDS)  # the readers' next check ends the process well before this
        os._exit(128 + signal.SIGKILL)  # stuck: what the parent's SIGKILL would have done

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    # Run as this module's importable copy, not as `__main__`: the readers check its stop flag.
    from mtashift.ingest import worker

    worker.main()
