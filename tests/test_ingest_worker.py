"""Large landing files are ingested in a tuned child process: same outputs, failures reported, chosen by size."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
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
    real = subprocess.run

    def spy(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(args))
        assert kw["env"]["POLARS_MAX_THREADS"] == "1"  # type: ignore[index]
        return real(args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(worker.subprocess, "run", spy)
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
    monkeypatch.setattr(worker.subprocess, "run", lambda *a, **k: _completed(stdout, returncode, stderr))
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

    monkeypatch.setattr(worker.subprocess, "run", fake_run)
    got = worker.run_in_workers([("kumo", {"name": n}) for n in ("a", "no-fork", "cut", "b")])
    assert got[0] == "a" and got[3] == "b"
    assert isinstance(got[1], WorkerError) and str(got[1]) == (
        "ingest worker for a kumo batch: could not start: BlockingIOError: [Errno 11] Resource temporarily unavailable"
    )
    assert (
        isinstance(got[2], WorkerError)
        and str(got[2]) == "ingest worker for a kumo batch: exit status 1: Killed"
    )
