"""Address normalisation for suppression: one definition, vectorised, shared by every source.

A suppression entry is looked up by its ``match_key``; a person reads its ``address``.

- ``address``: the local part exactly as written (only surrounding whitespace removed), ``@``, the
  domain lower-cased and IDNA-encoded (UTS #46, non-transitional).
- ``match_key``: the canonical local part lower-cased, ``@``, the same domain. The canonical local
  part of a quoted string whose content is a plain dot-atom is that content (``"jo"@x`` is ``jo@x``);
  any other quoted string stays quoted with only ``"`` and ``\\`` escaped.
- Plus-addresses (``a+tag@x``) and dots in Gmail local parts are NOT merged: whether two spellings
  reach one mailbox is the receiver's business, and suppressing a spelling that was never the
  failing one would silently drop mail.
- Whole-domain entries (legacy lists only): ``@example.com`` or ``example.com`` become
  ``address = match_key = "@example.com"``.

Everything is polars expressions over the whole column; the IDNA library runs only on the distinct
domains that need it (non-ASCII, ``xn--`` labels, address literals). The scalar
:func:`normalize_address` runs the same frame code on one value, so both paths agree by construction.
Rules and examples: ``schemas/docs/suppression.md``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import idna
import polars as pl

# RFC 5322 atext, plus any non-ASCII character that is not white space, a control or a format
# character (RFC 6531 allows UTF-8 local parts; invisible characters would only hide typos).
_NON_ASCII = r"[\x{80}-\x{10FFFF}--[\p{White_Space}\p{Cc}\p{Cf}]]"
_ATEXT = r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]|" + _NON_ASCII + ")"
DOT_ATOM_RE = rf"^{_ATEXT}+(?:\.{_ATEXT}+)*$"
# RFC 5321 Quoted-string: qtextSMTP or a backslash pair; non-ASCII allowed as above.
QUOTED_RE = r'^"(?:[\x20\x21\x23-\x5B\x5D-\x7E]|' + _NON_ASCII + r'|\\[\x20-\x7E])*"$'
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
ASCII_DOMAIN_RE = rf"^{_LABEL}(?:\.{_LABEL})+$"

MAX_LOCAL_OCTETS = 64
MAX_DOMAIN_OCTETS = 253
MAX_ADDRESS_OCTETS = 254

# Characters trimmed from both ends besides Unicode white space: BOM and zero-width space, which
# spreadsheets and copy-paste leave behind.
_TRIM_RE = r"^[\s\x{FEFF}\x{200B}]+|[\s\x{FEFF}\x{200B}]+$"
# `Display Name <addr>` and `<addr>` (as list exports and header copies write them).
_ANGLE_RE = r"^[^<>]*<([^<>]*)>$"

NORMALIZED_COLUMNS = ("address", "match_key", "local_part", "domain", "kind", "invalid")


class InvalidAddress(ValueError):
    """The text is not an e-mail address (or, where allowed, a domain)."""


@dataclass(frozen=True)
class Normalized:
    address: str
    match_key: str
    local_part: str | None
    domain: str
    kind: str  # "address" | "domain"


def _domain_verdict(domain: str) -> tuple[str | None, str | None]:
    """(ascii domain, None) or (None, why not) for one lower-cased, trimmed domain."""
    if not domain:
        return None, "empty domain"
    if domain.startswith("[") and domain.endswith("]"):
        inner = domain[1:-1]
        try:
            if inner.startswith("ipv6:"):
                return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]", None
            return f"[{ipaddress.IPv4Address(inner)}]", None
        except ValueError:
            return None, "address literal is not an IPv4 or IPv6 address"
    ascii_name = domain
    if not domain.isascii():
        try:
            ascii_name = idna.encode(domain, uts46=True, transitional=False).decode("ascii").lower()
        except (idna.IDNAError, UnicodeError) as exc:
            return None, f"domain is not a valid internationalised name: {exc}"
    elif "xn--" in domain:
        try:
            idna.decode(domain)
        except (idna.IDNAError, UnicodeError) as exc:
            return None, f"domain has an invalid xn-- label: {exc}"
    return ascii_name, None


def _ascii_domain_error(dom: pl.Expr) -> pl.Expr:
    return (
        pl.when(dom.str.len_bytes() > MAX_DOMAIN_OCTETS)
        .then(pl.lit(f"domain longer than {MAX_DOMAIN_OCTETS} octets"))
        .when(~dom.str.contains(".", literal=True))
        .then(pl.lit("domain has a single label"))
        .when(~dom.str.contains(ASCII_DOMAIN_RE))
        .then(pl.lit("domain labels are not valid host name labels"))
        .when(dom.str.contains(r"\.[0-9]+$"))
        .then(pl.lit("top-level label is numeric"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def _normalize_domains(series: pl.Series) -> pl.Series:
    """Struct series {domain, error}; the Python IDNA code runs once per distinct exotic value."""
    frame = pl.DataFrame({"d": series.cast(pl.String)})
    uniq = frame.unique("d").filter(pl.col("d").is_not_null())
    exotic_mask = (~uniq["d"].str.contains(r"^[\x00-\x7F]*$")) | uniq["d"].str.contains(r"xn--|^\[")
    exotic = uniq.filter(exotic_mask)
    plain = uniq.filter(~exotic_mask).with_columns(pl.col("d").alias("domain"))
    verdicts = [_domain_verdict(d) for d in exotic["d"].to_list()]
    exotic = exotic.with_columns(
        pl.Series("domain", [v[0] for v in verdicts], dtype=pl.String),
        pl.Series("error", [v[1] for v in verdicts], dtype=pl.String),
    )
    plain = plain.with_columns(error=pl.lit(None, dtype=pl.String))
    checked = pl.concat([plain, exotic], how="vertical").with_columns(
        # Literals are accepted as they are; everything else must end up a valid ASCII host name.
        error=pl.coalesce(
            pl.col("error"),
            pl.when(pl.col("domain").str.starts_with("["))
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(_ascii_domain_error(pl.col("domain"))),
        )
    )
    checked = checked.with_columns(
        domain=pl.when(pl.col("error").is_null()).then(pl.col("domain")).otherwise(None)
    )
    out = frame.join(checked, on="d", how="left", maintain_order="left", nulls_equal=False)
    return out.select(pl.struct("domain", "error")).to_series()


def normalize_expr_frame(
    frame: pl.LazyFrame | pl.DataFrame, column: str, *, allow_domain: bool = False, prefix: str = ""
) -> pl.LazyFrame:
    """Add ``prefix`` + NORMALIZED_COLUMNS for the text in ``column``.

    ``kind`` is ``address`` or ``domain`` for valid values (``domain`` only with ``allow_domain``),
    null when invalid; ``invalid`` then says why (and the other columns are null).
    """
    lf = frame.lazy()
    p = prefix
    t = f"__{p}t"
    text = pl.col(column).cast(pl.String).str.replace_all(_TRIM_RE, "")
    lf = lf.with_columns(
        text.str.replace(r"(?i)^mailto:", "")
        .pipe(lambda e: pl.coalesce(e.str.extract(_ANGLE_RE, 1), e))
        .str.replace_all(_TRIM_RE, "")
        .alias(t)
    )
    has_at = pl.col(t).str.contains("@", literal=True)
    # The last @ separates local part and domain: a quoted local part may itself contain @.
    local = pl.when(has_at).then(pl.col(t).str.extract(r"(?s)^(.*)@[^@]*$", 1))
    dom_text = (
        pl.when(has_at)
        .then(pl.col(t).str.extract(r"(?s)@([^@]*)$", 1))
        .otherwise(pl.col(t) if allow_domain else pl.lit(None, dtype=pl.String))
    )
    lf = lf.with_columns(
        local.alias(f"__{p}local"),
        dom_text.str.to_lowercase().str.replace(r"\.$", "").alias(f"__{p}dom_in"),
    )
    lf = lf.with_columns(
        pl.col(f"__{p}dom_in")
        .map_batches(
            _normalize_domains,
            return_dtype=pl.Struct({"domain": pl.String, "error": pl.String}),
            is_elementwise=True,
        )
        .alias(f"__{p}dom")
    ).unnest(f"__{p}dom", separator=".")
    dom = pl.col(f"__{p}dom.domain")
    dom_err = pl.col(f"__{p}dom.error")
    lcl = pl.col(f"__{p}local")
    is_quoted = lcl.str.contains(QUOTED_RE)
    inner = lcl.str.slice(1, lcl.str.len_chars() - 2).str.replace_all(r"\\(.)", "${1}")
    canonical = (
        pl.when(lcl.str.contains(DOT_ATOM_RE))
        .then(lcl)
        .when(is_quoted & inner.str.contains(DOT_ATOM_RE))
        .then(inner)
        .when(is_quoted)
        .then(
            pl.lit('"')
            + inner.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
            + pl.lit('"')
        )
    )
    # A whole-domain entry: `@domain` (empty local part) or a bare domain name.
    domain_entry = (pl.col(t).str.starts_with("@") & (pl.col(t).str.count_matches("@") == 1)) | ~has_at
    invalid = (
        pl.when(pl.col(t).is_null() | (pl.col(t) == ""))
        .then(pl.lit("empty"))
        .when(pl.col(t).str.contains(r"[\p{Cc}]"))
        .then(pl.lit("contains control characters"))
        .when(~has_at & pl.lit(not allow_domain))
        .then(pl.lit("no @"))
        .when(pl.lit(allow_domain) & domain_entry & dom_err.is_not_null())
        .then(pl.lit("not an address, and not a domain: ") + dom_err)
        .when(pl.lit(allow_domain) & domain_entry)
        .then(pl.lit(None, dtype=pl.String))
        .when(lcl == "")
        .then(pl.lit("empty local part"))
        .when(lcl == '""')
        .then(pl.lit("empty local part"))
        .when(canonical.is_null())
        .then(pl.lit("local part is neither a dot-atom nor a quoted string"))
        .when(lcl.str.len_bytes() > MAX_LOCAL_OCTETS)
        .then(pl.lit(f"local part longer than {MAX_LOCAL_OCTETS} octets"))
        .when(dom_err.is_not_null())
        .then(dom_err)
        .when(lcl.str.len_bytes() + 1 + dom.str.len_bytes() > MAX_ADDRESS_OCTETS)
        .then(pl.lit(f"address longer than {MAX_ADDRESS_OCTETS} octets"))
    )
    is_domain_entry = pl.lit(allow_domain) & domain_entry
    lf = lf.with_columns(invalid.alias(f"{p}invalid"))
    ok = pl.col(f"{p}invalid").is_null()
    lf = lf.with_columns(
        pl.when(ok & is_domain_entry)
        .then(pl.lit("@") + dom)
        .when(ok)
        .then(lcl + pl.lit("@") + dom)
        .alias(f"{p}address"),
        pl.when(ok & is_domain_entry)
        .then(pl.lit("@") + dom)
        .when(ok)
        .then(canonical.str.to_lowercase() + pl.lit("@") + dom)
        .alias(f"{p}match_key"),
        pl.when(ok & ~is_domain_entry).then(lcl).alias(f"{p}local_part"),
        pl.when(ok).then(dom).alias(f"{p}domain"),
        pl.when(ok & is_domain_entry)
        .then(pl.lit("domain"))
        .when(ok)
        .then(pl.lit("address"))
        .alias(f"{p}kind"),
    )
    scratch = [c for c in lf.collect_schema().names() if c.startswith(f"__{p}")]
    return lf.drop(scratch)


def normalize_column(
    frame: pl.LazyFrame | pl.DataFrame, column: str, *, allow_domain: bool = False, prefix: str = ""
) -> pl.LazyFrame:
    """Vectorised normalisation of ``column`` (alias kept short for callers)."""
    return normalize_expr_frame(frame, column, allow_domain=allow_domain, prefix=prefix)


def normalize_address(text: str, *, allow_domain: bool = False) -> Normalized:
    """Normalise one value; raises :class:`InvalidAddress` with the reason when it is not one."""
    row = (
        normalize_expr_frame(
            pl.DataFrame({"v": [text]}, schema={"v": pl.String}), "v", allow_domain=allow_domain
        )
        .collect()
        .row(0, named=True)
    )
    if row["invalid"] is not None:
        raise InvalidAddress(f"{text!r}: {row['invalid']}")
    return Normalized(
        address=row["address"],
        match_key=row["match_key"],
        local_part=row["local_part"],
        domain=row["domain"],
        kind=row["kind"],
    )
