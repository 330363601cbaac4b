"""Large landing files are ingested in a tuned child process: same outputs, failures reported, chosen by size."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from mtashift.ingest import run, worker
from mtashift.ingest.worker import WorkerError, run_in_worker, wants_worker

MESSY = Path(__file__).parent / "fixtures" / "pmta" / "acct-messy.csv"
REL = "pmta/node-a/acct-messy.csv"


def _outputs(tmp: Path, name: str) -> tuple[Path, Path]:
    return tmp / name / "events.parquet", tmp / name / "quarantine.parquet"


def test_a_worker_writes_what_the_in_process_ingest_writes(tmp_path: Path) -> None:
    ev_a, q_a = _outputs(tmp_path, "worker")
    ev_b, q_b = _outputs(tmp_path, "here")
    got = run_in_worker("pmta", path=MESSY, rel_path=REL, events_out=ev_a, quarantine_out=q_a)
    want = run._ingest_pmta_here(MESSY, rel_path=REL, events_out=ev_b, quarantine_out=q_b)
    assert got == want
    # the messy fixture: 17 lines = 7 events + 5 quarantined + 2 headers + 2 blank + 1 continuation
    assert (got["lines_read"], got["rows"], got["quarantined"], got["other_lines"]) == (17, 7, 5, 5)
    assert got["extra"]["continuation_lines"] == 1
    assert pl.read_parquet(ev_a).equals(pl.read_parquet(ev_b))
    q = pl.read_parquet(q_a)
    assert q.equals(pl.read_parquet(q_b))
    assert sorted(q["reason"].to_list()) == [
        "bad_timestamp",
        "invalid_utf8",
        "malformed_csv",
        "missing_type",
        "too_many_fields",
    ]


def test_a_failing_worker_raises_the_childs_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(
        WorkerError, match=r"pmta/node-a/acct-messy\.csv: (FileExistsError|NotADirectoryError)"
    ):
        run_in_worker(
            "pmta",
            path=MESSY,
            rel_path=REL,
            events_out=blocker / "events.parquet",
            quarantine_out=blocker / "quarantine.parquet",
        )


def test_ingest_pmta_sends_files_above_the_threshold_to_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    real = subprocess.Popen

    def spy(args: list[str], **kw: object) -> subprocess.Popen[str]:
        calls.append(list(args))
        assert kw["env"]["POLARS_MAX_THREADS"] == "1"  # type: ignore[index]
        assert kw["env"][worker.PARENT_ENV] == str(os.getpid())  # type: ignore[index]
        return real(args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(worker.subprocess, "Popen", spy)
    ev, q = _outputs(tmp_path, "small")
    small = run.ingest_pmta(MESSY, rel_path=REL, events_out=ev, quarantine_out=q)
    assert calls == []  # a small file stays in process

    monkeypatch.setattr(worker, "WORKER_MIN_BYTES", MESSY.stat().st_size)
    ev2, q2 = _outputs(tmp_path, "large")
    large = run.ingest_pmta(MESSY, rel_path=REL, events_out=ev2, quarantine_out=q2)
    assert len(calls) == 1 and calls[0][1:] == ["-m", "mtashift.ingest.worker"]
    assert large == small
    assert pl.read_parquet(ev2).equals(pl.read_parquet(ev))


def test_the_threshold_counts_a_gzip_file_at_its_estimated_text_size(tmp_path: Path) -> None:
    plain = tmp_path / "acct.csv"
    plain.write_bytes(b"x" * 1000)
    assert wants_worker(plain, min_bytes=1000)
    assert not wants_worker(plain, min_bytes=1001)
    packed = tmp_path / "acct.csv.gz"
    with open(plain, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    size = packed.stat().st_size
    assert wants_worker(packed, min_bytes=size * worker.GZIP_RATIO)
    assert not wants_worker(packed, min_bytes=size * worker.GZIP_RATIO + 1)
    assert not wants_worker(tmp_path / "absent.csv", min_bytes=0)


def _completed(stdout: str, returncode: int, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(args=[], returncode=returncode, stdout=stdout, stderr=stderr)


@pytest.mark.parametrize(
    ("stdout", "returncode", "stderr", "expected"),
    [
        # noise around the reply line is ignored
        ('progress\r50%\n' + worker.RESULT_MARK + '{"result": {"rows": 3}}\nbye\n', 0, "", {"rows": 3}),
        # the child's exception arrives whole, a multi-line message included
        (worker.RESULT_MARK + '{"error": "ValueError", "message": "bad column x\\nHint: try y"}\n', 1,
         "Traceback...\nHint: try y", "pmta/n/a.csv: ValueError: bad column x\nHint: try y"),
        # killed (e.g. out of memory): the signal, not the last stderr line
        ("", -9, "DeprecationWarning: harmless", "pmta/n/a.csv: killed by SIGKILL"),
        # died without a reply
        ("", 2, "Fatal Python error: oops\n", "pmta/n/a.csv: exit status 2: Fatal Python error: oops"),
        ("no reply here\n", 0, "", "pmta/n/a.csv: exit status 0: no output"),
    ],
)  # fmt: skip
def test_the_parent_reads_the_reply_line_and_reports_how_the_child_ended(
    monkeypatch: pytest.MonkeyPatch, stdout: str, returncode: int, stderr: str, expected: object
) -> None:
    monkeypatch.setattr(worker, "_spawn", lambda *a, **k: _completed(stdout, returncode, stderr))
    if isinstance(expected, dict):
        assert run_in_worker("pmta", rel_path="pmta/n/a.csv") == expected
    else:
        with pytest.raises(WorkerError) as err:
            run_in_worker("pmta", rel_path="pmta/n/a.csv")
        assert str(err.value) == f"ingest worker for {expected}"


def test_the_child_keeps_stdout_for_its_reply_and_reports_an_exception_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def noisy(**kw: object) -> dict:
        print("a stray print")
        if kw["fail"]:
            raise ValueError("line one\nline two")
        return {"rows": 1, "path": kw["path"]}

    monkeypatch.setitem(run.IN_PROCESS, "pmta", noisy)
    monkeypatch.setattr(worker.gc, "freeze", lambda: None)  # the test process is not the worker
    for fail in (False, True):
        request = {"kind": "pmta", "kwargs": {"path": {"__path__": "/x/a.csv"}, "fail": fail}}
        monkeypatch.setattr(worker.sys, "stdin", io.StringIO(json.dumps(request)))
        if fail:
            with pytest.raises(SystemExit) as ended:
                worker.main()
            assert ended.value.code == 1
        else:
            worker.main()
        out, errs = capsys.readouterr()
        assert "a stray print" in errs and "a stray print" not in out
        assert out.count("\n") == 1 and out.startswith(worker.RESULT_MARK)
        reply = json.loads(out[len(worker.RESULT_MARK) :])
        assert reply == (
            {"error": "ValueError", "message": "line one\nline two"}
            if fail
            else {"result": {"rows": 1, "path": "/x/a.csv"}}
        )


def test_the_landing_asset_hands_kumo_batches_to_the_batch_reader() -> None:
    import inspect

    from assets import ingest as ingest_assets

    assert run.INGESTORS["kumo"].batch is run.ingest_kumo_batch
    assert run.INGESTORS["pmta"].batch is None
    assert "batch=spec.batch" in inspect.getsource(ingest_assets._ingest_kind)
    # a large PowerMTA file starts its own worker, so the landing asset reads such files one at a time
    assert run.INGESTORS["pmta"].alone is wants_worker and run.INGESTORS["kumo"].alone is None
    assert "alone=spec.alone" in inspect.getsource(ingest_assets._ingest_kind)


def test_a_child_that_cannot_start_or_replies_cut_short_fails_its_own_request_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake_run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        request = json.loads(kw["input"])  # type: ignore[arg-type]
        name = request["kwargs"]["name"]
        if name == "no-fork":
            raise BlockingIOError(11, "Resource temporarily unavailable")
        if name == "cut":  # the reply line broke off mid-JSON
            return _completed(worker.RESULT_MARK + '{"result": [1, 2', 1, "Killed")
        return _completed(worker.RESULT_MARK + json.dumps({"result": name}) + "\n", 0)

    monkeypatch.setattr(worker, "_spawn", fake_run)
    got = worker.run_in_workers([("kumo", {"name": n}) for n in ("a", "no-fork", "cut", "b")])
    assert got[0] == "a" and got[3] == "b"
    assert isinstance(got[1], WorkerError) and str(got[1]) == (
        "ingest worker for a kumo batch: could not start: BlockingIOError: [Errno 11] Resource temporarily unavailable"
    )
    assert (
        isinstance(got[2], WorkerError)
        and str(got[2]) == "ingest worker for a kumo batch: exit status 1: Killed"
    )


def test_a_child_that_succeeds_passes_its_warnings_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = worker.RESULT_MARK + '{"result": 7}\n'
    monkeypatch.setattr(worker, "_spawn", lambda *a, **k: _completed(reply, 0, "UserWarning: odd value\n"))
    assert run_in_worker("pmta", rel_path="pmta/n/a.csv") == 7
    assert capsys.readouterr().err == "UserWarning: odd value\n"


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX timers")
@pytest.mark.parametrize(
    ("children", "late"),
    [(1, False), (2, False), (2, True)],
    ids=["one-child", "two-children", "one-starting-after-the-interrupt"],
)
def test_an_interrupted_caller_stops_its_children_before_the_interrupt_goes_on(
    monkeypatch: pytest.MonkeyPatch, children: int, late: bool
) -> None:
    procs: list[subprocess.Popen[str]] = []
    real = subprocess.Popen
    lock = threading.Lock()

    def recorded(args: list[str], **kw: object) -> subprocess.Popen[str]:
        with lock:
            slow = late and not procs
            procs.append(None)  # type: ignore[arg-type]
        if slow:  # this child starts only after the interrupt and the stop of the others
            time.sleep(2.0)
        proc = real(args, **kw)  # type: ignore[call-overload]
        with lock:
            procs[procs.index(None)] = proc
        return proc

    def sleeper(kind: str, **kw: object) -> int:
        done = worker._spawn([sys.executable, "-c", "import time; time.sleep(120)"], input="")
        return done.returncode

    monkeypatch.setattr(worker.subprocess, "Popen", recorded)
    monkeypatch.setattr(worker, "run_in_worker", sleeper)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)  # what a terminated run does to the step's main thread
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            worker.run_in_workers([("kumo", {"n": k}) for k in range(children)])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 30  # not the children's 120 s
    assert len(procs) == children
    assert [p.poll() for p in procs] == [-signal.SIGTERM] * children
    assert not worker._LIVE


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # exited, not yet reaped by its new parent


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_child_whose_parent_is_killed_stops_itself() -> None:
    # The child's stdin stays open (this test holds the write end), so only the parent watch can end it.
    read_end, write_end = os.pipe()
    middle_script = textwrap.dedent(
        f"""
        import os, subprocess, sys
        child = subprocess.Popen(
            [sys.executable, "-m", "mtashift.ingest.worker"], stdin={read_end},
            env={{**os.environ, {worker.PARENT_ENV!r}: str(os.getpid())}},
        )
        print(child.pid, flush=True)
        child.wait()
        """
    )
    middle = subprocess.Popen(
        [sys.executable, "-c", middle_script], stdout=subprocess.PIPE, text=True, pass_fds=(read_end,)
    )
    try:
        assert middle.stdout is not None
        pid = int(middle.stdout.readline())
        time.sleep(0.5)
        assert not _gone(pid)  # waiting for its request
        middle.kill()  # no chance to stop its child
        middle.wait()
        deadline = time.monotonic() + 20
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(pid)
    finally:
        os.close(write_end)
        os.close(read_end)
        if middle.stdout is not None:
            middle.stdout.close()


def test_sigterm_ends_a_child_reading_its_request_and_marks_a_working_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    monkeypatch.setattr(worker, "_STOPPING", threading.Event())
    monkeypatch.setattr(worker, "_WORKING", threading.Event())
    worker.raise_if_stopping()  # not told to stop: nothing happens
    with pytest.raises(SystemExit) as ended:  # nothing written yet: it may end right where it is
        worker._terminated(signal.SIGTERM, None)
    assert ended.value.code == 128 + signal.SIGTERM

    monkeypatch.setattr(worker, "_STOPPING", threading.Event())
    worker._WORKING.set()
    worker._terminated(signal.SIGTERM, None)  # working: only marked, so no clean-up is cut short
    with pytest.raises(SystemExit) as ended:  # the readers' next check
        worker.raise_if_stopping()
    assert ended.value.code == 128 + signal.SIGTERM


def test_a_worker_told_to_stop_leaves_its_file_unwritten_and_starts_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A native library may consume the SIGTERM handler's SystemExit; the flag it sets is checked between
    # blocks of a file and between the files of a batch.

    stop = threading.Event()
    stop.set()
    monkeypatch.setattr(worker, "_STOPPING", stop)
    ev, q = _outputs(tmp_path, "stopped")
    with pytest.raises(SystemExit) as ended:
        run._ingest_pmta_here(MESSY, rel_path=REL, events_out=ev, quarantine_out=q)
    assert ended.value.code == 128 + signal.SIGTERM
    assert not (tmp_path / "stopped").exists() or not any((tmp_path / "stopped").iterdir())

    started: list[object] = []
    monkeypatch.setattr(run, "_ingest_kumo_batch_here", lambda jobs, **kw: started.append(jobs) or [])
    with pytest.raises(SystemExit):
        run._worker_kumo_batch([(MESSY, "kumo/n1/x", ev, q, {})])
    assert started == []


@contextlib.contextmanager
def _child_reading_its_request(parent: int) -> Iterator[subprocess.Popen[bytes]]:
    """A worker child naming ``parent``, its stdin held open (the request never comes); killed at the end."""
    child = subprocess.Popen(
        [sys.executable, "-m", "mtashift.ingest.worker"],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, worker.PARENT_ENV: str(parent)},
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        assert child.stdin is not None
        child.stdin.close()
        child.wait()


def test_a_child_whose_named_parent_is_gone_stops_itself() -> None:
    # started through a launcher that stays (so its own parent never changes): the named parent is watched too
    dead_pid = int(subprocess.check_output([sys.executable, "-c", "import os; print(os.getpid())"]))
    with _child_reading_its_request(dead_pid) as child:
        assert child.wait(timeout=20) == 128 + signal.SIGTERM


def _ignores(pid: int, sig: int) -> bool:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("SigIgn:"):
            return bool(int(row.split()[1], 16) & (1 << (sig - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from /proc")
def test_a_child_leaves_ctrl_c_to_its_parent_and_ends_on_sigterm() -> None:
    with _child_reading_its_request(os.getpid()) as child:
        deadline = time.monotonic() + 20
        while not _ignores(child.pid, signal.SIGINT) and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)  # Ctrl-C reaches the whole process group
        time.sleep(0.5)
        assert child.poll() is None
        child.terminate()  # what the parent does
        assert child.wait(timeout=20) == 128 + signal.SIGTERM
