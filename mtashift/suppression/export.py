"""Exports of the suppression list: CSV (spreadsheet-safe), SQLite for KumoMTA, the Lua check, the diff.

Everything here is a pure function of the table: the same table gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import tempfile
from datetime import datetime
from pathlib import Path

import polars as pl

from mtashift.lake import write_bytes, write_text

SQLITE_PAGE_SIZE = 4096
SQLITE_SCHEMA_VERSION = "1"
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# A spreadsheet treats a cell starting with one of these as a formula (or, for tab/CR, may shift
# it into one). Untrusted text (addresses, reasons from legacy files) must never run as one.
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")

CSV_COLUMNS: tuple[str, ...] = (
    "address",
    "match_key",
    "scope",
    "source",
    "reason",
    "category",
    "first_seen",
    "last_seen",
    "expires_at",
    "evidence_count",
    "evidence",
    "rule",
    "sources",
)
LIST_SEPARATOR = "|"


def neutralise_cell(value: str | None) -> str:
    """The cell as text, prefixed with `'` when a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def _texts(frame: pl.DataFrame, columns: tuple[str, ...] | list[str]) -> pl.DataFrame:
    """Every column as text: timestamps ISO 8601 UTC to the second, lists `|`-separated."""
    out = []
    for name in columns:
        col = pl.col(name)
        dtype = frame.schema[name]
        if isinstance(dtype, pl.Datetime):
            out.append(col.dt.strftime(TS_FORMAT).alias(name))
        elif isinstance(dtype, pl.List):
            out.append(col.list.join(LIST_SEPARATOR).alias(name))
        else:
            out.append(col.cast(pl.String).alias(name))
    return frame.select(out)


def to_safe_csv(frame: pl.DataFrame, columns: tuple[str, ...] | list[str] | None = None) -> str:
    """CSV text (header + rows, `\\n` line ends, minimal quoting) with every cell neutralised."""
    cols = list(columns or frame.columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(cols)
    for row in _texts(frame, cols).iter_rows():
        writer.writerow([neutralise_cell(v) for v in row])
    return buf.getvalue()


def write_suppression_csv(table: pl.DataFrame, target: Path) -> Path:
    return write_text(to_safe_csv(table, CSV_COLUMNS), target)


def write_diff_csv(diff: pl.DataFrame, target: Path) -> Path:
    return write_text(to_safe_csv(diff), target)


def sqlite_bytes(table: pl.DataFrame, *, as_of: datetime, policy_fingerprint: str) -> bytes:
    """The KumoMTA lookup database as bytes.

    Built in a scratch file with a fixed page size, no journal, rows inserted in key order, then
    copied with ``VACUUM INTO`` so the file holds no free pages or history. Identical tables give
    identical bytes with the same SQLite library (the header records the library version).
    """
    rows = (
        _texts(
            table.sort("match_key", "scope"),
            [
                "match_key",
                "scope",
                "address",
                "source",
                "reason",
                "category",
                "first_seen",
                "last_seen",
                "expires_at",
                "rule",
            ],
        )
        .with_columns(table.sort("match_key", "scope")["evidence_count"])
        .rows()
    )
    meta = [
        ("as_of", as_of.strftime(TS_FORMAT)),
        ("policy", policy_fingerprint),
        ("rows", str(table.height)),
        ("schema_version", SQLITE_SCHEMA_VERSION),
    ]
    with tempfile.TemporaryDirectory(prefix="mtashift-sqlite-") as tmp:
        build = Path(tmp) / "build.sqlite"
        final = Path(tmp) / "final.sqlite"
        con = sqlite3.connect(build, isolation_level=None)
        try:
            con.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA encoding = 'UTF-8'")
            con.execute("BEGIN")
            con.execute(
                "CREATE TABLE suppression ("
                " match_key TEXT NOT NULL, scope TEXT NOT NULL, address TEXT NOT NULL,"
                " source TEXT NOT NULL, reason TEXT, category TEXT, first_seen TEXT, last_seen TEXT,"
                " expires_at TEXT, rule TEXT, evidence_count INTEGER NOT NULL,"
                " PRIMARY KEY (match_key, scope)) WITHOUT ROWID"
            )
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
            con.executemany("INSERT INTO suppression VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            con.executemany("INSERT INTO meta VALUES (?, ?)", meta)
            con.execute("COMMIT")
            con.execute("VACUUM INTO ?", (str(final),))
        finally:
            con.close()
        return final.read_bytes()


def write_suppression_sqlite(
    table: pl.DataFrame, target: Path, *, as_of: datetime, policy_fingerprint: str
) -> Path:
    return write_bytes(sqlite_bytes(table, as_of=as_of, policy_fingerprint=policy_fingerprint), target)


KUMO_LUA = """\
-- mtashift suppression check for KumoMTA
--
-- Generated by mtashift together with suppression.sqlite (list as of {as_of}, policy {policy}).
-- Reference: schemas/docs/suppression.md in the mtashift repository.
--
-- What it does: for each message received over SMTP, look the envelope recipient up in
-- suppression.sqlite (its own key, and `@<domain>` for whole-domain entries) in the scopes
-- `global`, `sender_domain:<envelope sender domain>` and `tenant:<tenant meta>`, and refuse the
-- message with a 550 when a row applies that has not expired.
--
-- Install: copy suppression.sqlite to DB_PATH below, put this file where your policy's
-- `require` finds it (or load it with dofile), and call `check(msg)` from your
-- smtp_server_message_received handler:
--
--   local suppression = require 'mtashift_suppression'
--   kumo.on('smtp_server_message_received', function(msg)
--     suppression.check(msg)
--     -- ... the rest of your handler
--   end)
--
-- Lookups are cached for CACHE_TTL, so a new copy of the database is seen within that time;
-- expiry is checked to the hour. Known limits: Lua's string.lower folds ASCII only, so a
-- local part with non-ASCII capitals matches only as lower-cased by the exporter; a recipient
-- domain given in Unicode (SMTPUTF8) must be converted to its xn-- form to match.

local kumo = require 'kumo'
local sqlite = require 'sqlite'

local M = {{}}

M.DB_PATH = '/opt/kumomta/etc/policy/suppression.sqlite'
M.CACHE_TTL = '5 minutes'
M.REJECT_CODE = 550
M.REJECT_TEXT = '5.7.1 recipient address is suppressed'

-- Characters of an unquoted (dot-atom) local part; bytes 128-255 are UTF-8 text.
local ATOM_CHARS = "^[%w!#$%%&'*+/=?^_`{{|}}~%.%-\\128-\\255]+$"

-- The exporter's match_key spelling of a local part: a quoted local part whose content is a
-- dot-atom is written without quotes; any other stays quoted with only \\ and " escaped.
local function canonical_local(user)
  local u = user or ''
  if #u >= 2 and u:sub(1, 1) == '"' and u:sub(-1) == '"' then
    u = (u:sub(2, -2):gsub('\\\\(.)', '%1'))
  end
  local is_atom = u ~= ''
    and u:find(ATOM_CHARS) ~= nil
    and u:sub(1, 1) ~= '.'
    and u:sub(-1) ~= '.'
    and u:find('..', 1, true) == nil
  if not is_atom then
    u = '"' .. (u:gsub('[\\\\"]', '\\\\%0')) .. '"'
  end
  return string.lower(u)
end

local function lookup(key, domain_key, sender_scope, tenant_scope, hour)
  local db = sqlite.open(M.DB_PATH)
  local rows = db:execute(
    "SELECT coalesce(reason, 'suppressed') FROM suppression"
      .. ' WHERE match_key IN (?, ?) AND scope IN (?, ?, ?)'
      .. ' AND (expires_at IS NULL OR expires_at > ?)'
      .. ' ORDER BY match_key, scope LIMIT 1',
    key,
    domain_key,
    'global',
    sender_scope,
    tenant_scope,
    hour
  )
  -- A query that returns no row yields a number (rows affected), not a table.
  if type(rows) == 'table' and rows[1] ~= nil then
    return rows[1]
  end
  return ''
end

local cached_lookup = kumo.memoize(lookup, {{
  name = 'mtashift_suppression',
  ttl = M.CACHE_TTL,
  capacity = 100000,
}})

-- The suppression reason for a message ('' when its recipient may be mailed).
function M.reason(msg)
  local rcpt = msg:recipient()
  local domain = string.lower(rcpt.domain or '')
  local sender = msg:sender()
  local sender_domain = sender and sender.domain and string.lower(sender.domain) or ''
  local tenant = msg:get_meta 'tenant'
  return cached_lookup(
    canonical_local(rcpt.user) .. '@' .. domain,
    '@' .. domain,
    sender_domain ~= '' and ('sender_domain:' .. sender_domain) or 'global',
    tenant and tenant ~= '' and ('tenant:' .. tenant) or 'global',
    os.date '!%Y-%m-%dT%H:00:00Z'
  )
end

function M.check(msg)
  if M.reason(msg) ~= '' then
    kumo.reject(M.REJECT_CODE, M.REJECT_TEXT)
  end
end

return M
"""


def kumo_lua(*, as_of: datetime, policy_fingerprint: str) -> str:
    return KUMO_LUA.format(as_of=as_of.strftime(TS_FORMAT), policy=policy_fingerprint)


def write_exports(
    *,
    folder: Path,
    table: pl.DataFrame,
    diff: pl.DataFrame,
    as_of: datetime,
    policy_fingerprint: str,
) -> dict[str, Path]:
    """Write every export into ``folder`` (each file atomically); returns name -> path."""
    return {
        "suppression.csv": write_suppression_csv(table, folder / "suppression.csv"),
        "suppression.sqlite": write_suppression_sqlite(
            table, folder / "suppression.sqlite", as_of=as_of, policy_fingerprint=policy_fingerprint
        ),
        "kumo_suppression.lua": write_text(
            kumo_lua(as_of=as_of, policy_fingerprint=policy_fingerprint), folder / "kumo_suppression.lua"
        ),
        "suppression_diff.csv": write_diff_csv(diff, folder / "suppression_diff.csv"),
    }
