"""PowerMTA configuration parser: ``landing/pmta-config/<node>/config`` (+ include files) -> typed model.

Two passes. :func:`read_config_tree` turns the files into a generic tree of blocks and directives
(includes expanded in place, comments removed, every item carrying its file and line); then
:func:`interpret` builds the typed :class:`PmtaConfig` from the tree. Nothing here is fatal by default:
unknown directives and tags are kept and reported, syntax errors (unclosed or mismatched tags, a
missing include) become :class:`Issue` rows naming file and line. ``strict=True`` raises
:class:`PmtaConfigError` on the first syntax error instead.

Syntax accepted (PowerMTA 5.0 guide §3.1, /work/shared/reference/formats.md §A.3, §A.5):

* one directive per line, ``name value...``; ``#`` starts a comment anywhere outside double quotes
  (a backslash escapes the next character, so ``\\#`` and ``\\"`` stay literal);
* ``<tag ARG>`` ... ``</tag>`` blocks, nested (``<domain>`` inside ``<virtual-mta>`` /
  ``<virtual-mta-pool>``);
* continuation: PowerMTA documents none. To be liberal, a line ending in whitespace + backslash
  (``... \\``) is joined with the next line (an ``info`` issue records it). A bare trailing backslash
  glued to a word (``move-to c:\\pmta\\``) is a Windows path, not a continuation;
* ``include PATH`` at any scope: relative paths resolve against the including file's folder; absolute
  paths (``/etc/pmta/vmtas.conf``, ``c:\\pmta\\x.conf``) cannot exist in the landing folder, so their
  trailing components are looked up under the including file's folder, then under the node folder
  (longest tail first, ending with the bare basename). Wildcards expand (sorted).

Domain-pattern semantics and the effective-settings rule live in :func:`effective_domain_rules`.
Key material is never read: ``domain-key`` keeps the path only.
"""

from __future__ import annotations

import glob
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath

import idna
import yaml

MAIN_FILE = "config"
MAX_INCLUDE_DEPTH = 16
# CIDR ranges larger than this are kept as a range instead of being expanded to addresses; PowerMTA
# itself only uses the local addresses inside the range, which a landing folder cannot tell us.
MAX_CIDR_EXPANSION = 4096

SEVERITIES = ("error", "warning", "info")


# --------------------------------------------------------------------------------------------------
# vocabulary (schemas/pmta_translation.yaml)


@cache
def vocabulary() -> dict:
    with resources.files("schemas").joinpath("pmta_translation.yaml").open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def known_tags() -> frozenset[str]:
    return frozenset(vocabulary()["known_tags"])


def known_directives() -> frozenset[str]:
    return frozenset(vocabulary()["known_directives"])


# --------------------------------------------------------------------------------------------------
# generic tree


@dataclass(frozen=True, order=True)
class Loc:
    """Where an item was written: file path relative to the node folder, 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Directive:
    name: str  # lower-case
    value: str  # raw text after the name, stripped
    loc: Loc


@dataclass
class Block:
    tag: str  # lower-case; "(root)" for the file level
    arg: str
    loc: Loc
    children: list[Directive | Block] = field(default_factory=list)
    end_loc: Loc | None = None

    def directives(self) -> Iterator[Directive]:
        for c in self.children:
            if isinstance(c, Directive):
                yield c

    def blocks(self, tag: str | None = None) -> Iterator[Block]:
        for c in self.children:
            if isinstance(c, Block) and (tag is None or c.tag == tag):
                yield c


@dataclass(frozen=True)
class Issue:
    severity: str  # error | warning | info
    code: str
    message: str
    loc: Loc | None


class PmtaConfigError(ValueError):
    """A syntax error in strict mode; ``loc`` names the file and line."""

    def __init__(self, message: str, loc: Loc | None) -> None:
        super().__init__(f"{loc}: {message}" if loc else message)
        self.loc = loc


# --------------------------------------------------------------------------------------------------
# lexing


_TAG = re.compile(r"^<\s*(/?)\s*([A-Za-z][\w.-]*)\s*(.*?)\s*>$")
_CONT = re.compile(r"(^|\s)\\$")


def strip_comment(line: str) -> str:
    """Drop a ``#`` comment that is outside double quotes (backslash escapes the next character)."""
    in_quote = False
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == "#" and not in_quote:
            return line[:i]
        i += 1
    return line


def logical_lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """Yield (first physical line number, logical line, was_continued) with comments removed."""
    pending: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), start=1):
        body = strip_comment(raw).rstrip()
        if pending and body.lstrip().startswith("<"):
            # a tag never continues a directive: the dangling backslash ends the pending line
            yield start, " ".join(p for p in pending if p), True
            pending = []
        if not pending:
            start = no
        if _CONT.search(body):
            pending.append(body[:-1].strip())
            continue
        if pending:
            pending.append(body.strip())
            yield start, " ".join(p for p in pending if p), True
            pending = []
        else:
            yield no, body.strip(), False
    if pending:
        yield start, " ".join(p for p in pending if p), True


def unquote(value: str) -> str:
    v = value.strip()
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return v


# --------------------------------------------------------------------------------------------------
# reading files into the tree


@dataclass
class _Reader:
    node_dir: Path
    strict: bool
    issues: list[Issue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.node_dir.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    def report(
        self, severity: str, code: str, message: str, loc: Loc | None, *, syntax: bool = False
    ) -> None:
        if syntax and self.strict:
            raise PmtaConfigError(message, loc)
        self.issues.append(Issue(severity, code, message, loc))

    def resolve_include(self, spec: str, including: Path) -> list[Path]:
        spec = unquote(spec)
        base = including.parent
        is_windows = bool(re.match(r"^[A-Za-z]:[\\/]", spec)) or "\\" in spec
        pure = PureWindowsPath(spec) if is_windows else PurePosixPath(spec)
        if not pure.is_absolute() and not (is_windows and pure.drive):
            return sorted(Path(p) for p in glob.glob(str(base / Path(*pure.parts))))
        parts = [p for p in pure.parts[1:] if p not in ("\\", "/")]
        for k in range(len(parts), 0, -1):
            tail = Path(*parts[-k:])
            for root in (base, self.node_dir):
                found = sorted(Path(p) for p in glob.glob(str(root / tail)))
                if found:
                    return found
        return []

    def read(self, path: Path, stack: list[Block], active: tuple[Path, ...], depth: int) -> None:
        rel = self.rel(path)
        if rel not in self.files:
            self.files.append(rel)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            self.report("error", "unreadable-file", f"cannot read {rel}: {exc}", None)
            return
        base_depth = len(stack)
        for no, line, continued in logical_lines(text):
            if not line:
                continue
            loc = Loc(rel, no)
            if continued:
                self.report("info", "line-continuation", "backslash continuation joined lines", loc)
            cur = stack[-1]
            if line.startswith("<"):
                m = _TAG.match(line)
                if not m:
                    self.report("error", "malformed-tag", f"malformed tag line {line!r}", loc, syntax=True)
                    continue
                closing, tag, arg = m.group(1) == "/", m.group(2).lower(), m.group(3).strip()
                if not closing:
                    blk = Block(tag=tag, arg=arg, loc=loc)
                    cur.children.append(blk)
                    stack.append(blk)
                    continue
                # closing tag: find the innermost open block with that tag opened in this file
                idx = next(
                    (i for i in range(len(stack) - 1, base_depth - 1, -1) if stack[i].tag == tag), None
                )
                if idx is None:
                    self.report(
                        "error",
                        "unmatched-close",
                        f"closing </{tag}> without a matching <{tag}> in this file",
                        loc,
                        syntax=True,
                    )
                    continue
                for open_blk in stack[idx + 1 :][::-1]:
                    self.report(
                        "error",
                        "unclosed-tag",
                        f"<{open_blk.tag} {open_blk.arg}> opened at {open_blk.loc} is not closed before </{tag}>",
                        loc,
                        syntax=True,
                    )
                stack[idx].end_loc = loc
                del stack[idx:]
                continue
            if stack[-1].tag in _free_form_tags() and line.startswith("/"):
                cur.children.append(Directive(name="(pattern)", value=line, loc=loc))
                continue
            name, value = [*re.split(r"\s+", line, maxsplit=1), ""][:2]
            name = name.lower()
            value = value.strip()
            if name == "include":
                self.include(value, path, loc, parent=cur, stack=stack, active=active, depth=depth)
                continue
            cur.children.append(Directive(name=name, value=value, loc=loc))
        while len(stack) > base_depth:
            blk = stack.pop()
            self.report(
                "error",
                "unclosed-tag",
                f"<{blk.tag} {blk.arg}> opened at {blk.loc} is not closed by the end of {rel}",
                blk.loc,
                syntax=True,
            )

    def include(self, spec: str, including: Path, loc: Loc, *, parent: Block, stack, active, depth) -> None:
        parent.children.append(Directive(name="include", value=spec, loc=loc))
        if depth >= MAX_INCLUDE_DEPTH:
            self.report("error", "include-depth", f"include nesting deeper than {MAX_INCLUDE_DEPTH}", loc)
            return
        targets = self.resolve_include(spec, including)
        if not targets:
            self.report(
                "error", "include-missing", f"include {spec!r} matches no file in the node folder", loc
            )
            return
        for target in targets:
            if target.resolve() in active:
                self.report("error", "include-cycle", f"include {spec!r} includes itself", loc)
                continue
            self.read(target, stack, (*active, target.resolve()), depth + 1)


@cache
def _free_form_tags() -> frozenset[str]:
    return frozenset(vocabulary().get("free_form_tags", []))


def read_config_tree(
    node_dir: str | Path, *, main: str = MAIN_FILE, strict: bool = False
) -> tuple[Block, list[str], list[Issue]]:
    """Read ``node_dir/main`` and its includes into one tree. Returns (root, files read, issues)."""
    node_dir = Path(node_dir)
    reader = _Reader(node_dir=node_dir, strict=strict)
    root = Block(tag="(root)", arg="", loc=Loc(main, 0))
    path = node_dir / main
    if not path.exists():
        reader.report("error", "missing-main-file", f"no {main!r} file in {node_dir}", None)
        return root, reader.files, reader.issues
    reader.read(path, [root], (path.resolve(),), 0)
    return root, reader.files, reader.issues


def read_config_text(text: str, *, name: str = MAIN_FILE, strict: bool = False) -> tuple[Block, list[Issue]]:
    """Parse one in-memory file (no includes can be resolved). For tests and previews."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_text(text, encoding="utf-8")
        root, _files, issues = read_config_tree(tmp, main=name, strict=strict)
    return root, issues


# --------------------------------------------------------------------------------------------------
# typed model


PATTERN_KINDS = ("exact", "subdomains", "domain_and_subdomains", "all", "other")


@dataclass(frozen=True)
class DomainPattern:
    """One recipient-domain pattern after macro expansion."""

    text: str  # normalised: lower-case, IDNA A-labels, e.g. "*.x.com", "[*.]x.com", "*"
    kind: str  # one of PATTERN_KINDS
    suffix: str  # the domain part ("" for "*")
    from_macro: bool = False

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """Higher is more specific. See :func:`effective_domain_rules`."""
        labels = self.suffix.count(".") + 1 if self.suffix else 0
        explicit = 0 if self.from_macro else 1
        if self.kind in ("exact", "other"):
            return (2, labels, 0, explicit)
        if self.kind == "subdomains":
            return (1, labels, 1, explicit)
        if self.kind == "domain_and_subdomains":
            return (1, labels, 0, explicit)
        return (0, 0, 0, explicit)


@dataclass
class DomainBlock:
    raw_pattern: str
    patterns: list[DomainPattern]
    directives: list[Directive]
    loc: Loc
    scope: str  # global | pool | vmta
    scope_name: str | None


@dataclass(frozen=True)
class SourceHost:
    ip: str | None  # None when a range was too large to expand
    hostname: str | None
    spec: str  # as written: IP or CIDR
    loc: Loc


@dataclass(frozen=True)
class DomainKey:
    selector: str
    domain: str
    path: str
    scope: str  # global | vmta | pool | domain
    scope_name: str | None
    loc: Loc


@dataclass
class VirtualMta:
    name: str
    loc: Loc
    source_hosts: list[SourceHost] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)
    domains: list[DomainBlock] = field(default_factory=list)


@dataclass
class VmtaPool:
    name: str
    loc: Loc
    members: list[tuple[str, Loc]] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)
    domains: list[DomainBlock] = field(default_factory=list)


@dataclass(frozen=True)
class MxRollup:
    mx_host: str
    rollup: str
    by_ip: bool
    loc: Loc


@dataclass(frozen=True)
class PatternRule:
    regex: str  # PCRE text between the slashes
    actions: tuple[str, ...]
    loc: Loc


@dataclass
class SmtpPatternList:
    name: str
    loc: Loc
    rules: list[PatternRule] = field(default_factory=list)


@dataclass
class AcctFile:
    path: str
    loc: Loc
    records: tuple[str, ...] = ("d", "b")
    record_fields: dict[str, str] = field(default_factory=dict)
    directives: list[Directive] = field(default_factory=list)


@dataclass
class SourceRule:
    """A ``<source ADDR|NAME>`` (inbound injection) block."""

    name: str
    loc: Loc
    directives: list[Directive] = field(default_factory=list)


@dataclass
class PmtaConfig:
    node: str
    files: list[str] = field(default_factory=list)
    global_directives: list[Directive] = field(default_factory=list)
    global_source_hosts: list[SourceHost] = field(default_factory=list)
    host_name: str | None = None
    macros: dict[str, list[str]] = field(default_factory=dict)  # fully expanded
    domains: list[DomainBlock] = field(default_factory=list)  # global scope
    vmtas: dict[str, VirtualMta] = field(default_factory=dict)
    pools: dict[str, VmtaPool] = field(default_factory=dict)
    mx_rollups: list[MxRollup] = field(default_factory=list)
    domain_keys: list[DomainKey] = field(default_factory=list)
    pattern_lists: dict[str, SmtpPatternList] = field(default_factory=dict)
    acct_files: list[AcctFile] = field(default_factory=list)
    sources: list[SourceRule] = field(default_factory=list)
    other_blocks: list[Block] = field(default_factory=list)
    unknown: list[tuple[str, Directive]] = field(default_factory=list)  # (scope label, directive)
    issues: list[Issue] = field(default_factory=list)
    tree: Block | None = None

    def pools_of(self, vmta: str) -> list[str]:
        return [p.name for p in self.pools.values() if any(m == vmta for m, _ in p.members)]

    def all_domain_blocks(self) -> Iterator[DomainBlock]:
        yield from self.domains
        for p in self.pools.values():
            yield from p.domains
        for v in self.vmtas.values():
            yield from v.domains


# --------------------------------------------------------------------------------------------------
# helpers: IPs, patterns, macros


def normalise_cidr(spec: str) -> str:
    """PowerMTA accepts abbreviated IPv4 prefixes (``10/8``); pad them for the ipaddress module."""
    if "/" in spec and ":" not in spec:
        addr, _, bits = spec.partition("/")
        octets = addr.split(".")
        if 1 <= len(octets) < 4 and all(o.isdigit() for o in octets):
            addr = ".".join(octets + ["0"] * (4 - len(octets)))
        return f"{addr}/{bits}"
    return spec


def expand_source_host(spec: str, hostname: str | None, loc: Loc, issues: list[Issue]) -> list[SourceHost]:
    """``smtp-source-host IP|CIDR HOST`` -> one SourceHost per address (127.0.0.1 excluded, as PowerMTA does)."""
    try:
        if "/" not in spec:
            ip = ipaddress.ip_address(spec)
            return [SourceHost(ip=str(ip), hostname=hostname, spec=spec, loc=loc)]
        net = ipaddress.ip_network(normalise_cidr(spec), strict=False)
    except ValueError:
        issues.append(
            Issue("warning", "bad-source-host", f"smtp-source-host {spec!r} is not an IP or CIDR", loc)
        )
        return []
    if net.num_addresses > MAX_CIDR_EXPANSION:
        issues.append(
            Issue(
                "warning",
                "cidr-not-expanded",
                f"{spec} has {net.num_addresses} addresses; kept as a range",
                loc,
            )
        )
        return [SourceHost(ip=None, hostname=hostname, spec=spec, loc=loc)]
    hosts = [net.network_address] if net.num_addresses == 1 else list(net.hosts())
    loopback = ipaddress.ip_address("127.0.0.1")
    return [SourceHost(ip=str(h), hostname=hostname, spec=spec, loc=loc) for h in hosts if h != loopback]


def normalise_domain(text: str) -> str:
    d = text.strip().strip('"').lower().rstrip(".")
    if d.isascii():
        return d
    try:
        return idna.encode(d, uts46=True).decode("ascii")
    except idna.IDNAError:
        return d


def classify_pattern(text: str, *, from_macro: bool = False) -> DomainPattern:
    t = text.strip().lower()
    if t == "*":
        return DomainPattern("*", "all", "", from_macro)
    if t.startswith("[*.]"):
        suffix = normalise_domain(t[4:])
        return DomainPattern(f"[*.]{suffix}", "domain_and_subdomains", suffix, from_macro)
    if t.startswith("*."):
        suffix = normalise_domain(t[2:])
        return DomainPattern(f"*.{suffix}", "subdomains", suffix, from_macro)
    if "*" in t or "?" in t:
        return DomainPattern(t, "other", t, from_macro)
    d = normalise_domain(t)
    return DomainPattern(d, "exact", d, from_macro)


_MACRO_REF = re.compile(r"\$\{?([A-Za-z0-9_]+)\}?")


def expand_macros(raw: dict[str, tuple[str, Loc]], issues: list[Issue]) -> dict[str, list[str]]:
    """Expand ``domain-macro`` definitions (values may reference other macros). Loops are errors."""
    out: dict[str, list[str]] = {}

    def expand(name: str, trail: tuple[str, ...]) -> list[str]:
        if name in out:
            return out[name]
        text, loc = raw[name]
        if name in trail:
            issues.append(
                Issue("error", "macro-loop", f"domain-macro loop: {' -> '.join((*trail, name))}", loc)
            )
            return []
        values: list[str] = []
        for item in (v.strip() for v in text.split(",")):
            if not item:
                continue
            values.extend(substitute(item, (*trail, name), loc))
        out[name] = values
        return values

    def substitute(item: str, trail: tuple[str, ...], loc: Loc) -> list[str]:
        m = _MACRO_REF.search(item)
        if not m:
            return [item]
        ref = m.group(1)
        if ref not in raw:
            issues.append(Issue("error", "undefined-macro", f"${ref} is not a defined domain-macro", loc))
            return [item]
        results = []
        for v in expand(ref, trail):
            results.extend(substitute(item[: m.start()] + v + item[m.end() :], trail, loc))
        return results

    for name in raw:
        expand(name, ())
    return out


def expand_pattern(
    raw: str, macros: dict[str, list[str]], loc: Loc, issues: list[Issue]
) -> list[DomainPattern]:
    """``<domain PATTERN>`` argument -> patterns (commas/spaces separate several; ``$MACRO`` expands)."""
    out: list[DomainPattern] = []
    for item in (p for p in re.split(r"[,\s]+", unquote(raw)) if p):
        if not _MACRO_REF.search(item):
            out.append(classify_pattern(item))
            continue
        texts = [item]
        while any(_MACRO_REF.search(t) for t in texts):
            nxt = []
            for t in texts:
                m = _MACRO_REF.search(t)
                if not m:
                    nxt.append(t)
                    continue
                if m.group(1) not in macros:
                    issues.append(
                        Issue("error", "undefined-macro", f"${m.group(1)} is not a defined domain-macro", loc)
                    )
                    return out
                nxt.extend(t[: m.start()] + v + t[m.end() :] for v in macros[m.group(1)])
            texts = nxt
        out.extend(classify_pattern(t, from_macro=True) for t in texts)
    for p in out:
        if p.kind == "other":
            issues.append(
                Issue(
                    "warning",
                    "unsupported-pattern",
                    f"domain pattern {p.text!r} is not a documented form",
                    loc,
                )
            )
    return out


def parse_domain_key(
    value: str, loc: Loc, scope: str, scope_name: str | None, issues: list[Issue]
) -> DomainKey | None:
    parts = [p.strip() for p in unquote(value).split(",")]
    if len(parts) < 3 or not all(parts[:3]):
        issues.append(Issue("warning", "bad-domain-key", "domain-key needs SELECTOR,DOMAIN,PATH", loc))
        return None
    selector, domain, path = parts[0], parts[1], ",".join(parts[2:])
    return DomainKey(
        selector, domain if domain == "*" else normalise_domain(domain), path, scope, scope_name, loc
    )


def parse_reply(value: str, loc: Loc, issues: list[Issue]) -> PatternRule | None:
    """``reply /PCRE/ ACTIONS`` -> PatternRule. The closing slash is the last ``/`` on the line."""
    v = value.strip()
    end = v.rfind("/")
    if not v.startswith("/") or end <= 0:
        issues.append(Issue("warning", "bad-reply", f"reply {value!r} is not /PATTERN/ ACTIONS", loc))
        return None
    regex = v[1:end]
    actions = tuple(a for a in re.split(r"[,\s]+", v[end + 1 :].strip()) if a)
    return PatternRule(regex=regex, actions=actions, loc=loc)


# --------------------------------------------------------------------------------------------------
# interpretation


def _scope_label(scope: str, name: str | None) -> str:
    return scope if name is None else f"{scope}:{name}"


def interpret(
    root: Block, *, node: str, files: list[str] | None = None, issues: list[Issue] | None = None
) -> PmtaConfig:
    """Build the typed model from a tree (see :func:`read_config_tree`)."""
    cfg = PmtaConfig(node=node, files=list(files or []), issues=list(issues or []), tree=root)
    kd = known_directives()
    kt = known_tags()

    def note_unknown(scope: str, d: Directive) -> None:
        if d.name not in kd:
            cfg.unknown.append((scope, d))
            cfg.issues.append(
                Issue("warning", "unknown-directive", f"unknown directive {d.name!r} in {scope}", d.loc)
            )

    # macros first: PowerMTA resolves them regardless of where in the file they are defined
    raw_macros: dict[str, tuple[str, Loc]] = {}
    for d in root.directives():
        if d.name == "domain-macro":
            name, _, values = d.value.partition(" ")
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                cfg.issues.append(Issue("warning", "bad-macro-name", f"domain-macro name {name!r}", d.loc))
            if name in raw_macros:
                cfg.issues.append(Issue("info", "macro-redefined", f"domain-macro {name} redefined", d.loc))
            raw_macros[name] = (values.strip(), d.loc)
    cfg.macros = expand_macros(raw_macros, cfg.issues)

    def domain_block(blk: Block, scope: str, scope_name: str | None) -> DomainBlock:
        label = f"{_scope_label(scope, scope_name)}/domain {blk.arg}"
        db = DomainBlock(
            raw_pattern=blk.arg,
            patterns=expand_pattern(blk.arg, cfg.macros, blk.loc, cfg.issues),
            directives=[],
            loc=blk.loc,
            scope=scope,
            scope_name=scope_name,
        )
        for c in blk.children:
            if isinstance(c, Block):
                cfg.issues.append(
                    Issue("warning", "nested-block", f"<{c.tag}> inside <domain {blk.arg}> ignored", c.loc)
                )
                cfg.other_blocks.append(c)
                continue
            if c.name == "include":
                continue
            note_unknown(label, c)
            if c.name == "domain-key":
                key = parse_domain_key(c.value, c.loc, "domain", blk.arg, cfg.issues)
                if key:
                    cfg.domain_keys.append(key)
            db.directives.append(c)
        if not db.patterns:
            cfg.issues.append(
                Issue("warning", "empty-pattern", f"<domain {blk.arg}> has no usable pattern", blk.loc)
            )
        return db

    for c in root.children:
        if isinstance(c, Directive):
            if c.name in ("include", "domain-macro"):
                continue
            note_unknown("global", c)
            if c.name == "smtp-source-host":
                spec, _, host = c.value.partition(" ")
                cfg.global_source_hosts.extend(
                    expand_source_host(spec, host.strip() or None, c.loc, cfg.issues)
                )
            elif c.name == "host-name":
                cfg.host_name = unquote(c.value)
            elif c.name == "domain-key":
                key = parse_domain_key(c.value, c.loc, "global", None, cfg.issues)
                if key:
                    cfg.domain_keys.append(key)
            cfg.global_directives.append(c)
            continue
        blk = c
        if blk.tag not in kt:
            cfg.issues.append(Issue("warning", "unknown-tag", f"unknown block <{blk.tag}>", blk.loc))
        if blk.tag == "virtual-mta":
            _virtual_mta(cfg, blk, domain_block, note_unknown)
        elif blk.tag == "virtual-mta-pool":
            _pool(cfg, blk, domain_block, note_unknown)
        elif blk.tag == "domain":
            cfg.domains.append(domain_block(blk, "global", None))
        elif blk.tag == "mx-rollup-list":
            for d in blk.directives():
                if d.name == "include":
                    continue
                parts = d.value.split()
                if d.name != "mx" or len(parts) < 2:
                    note_unknown("mx-rollup-list", d)
                    cfg.issues.append(
                        Issue(
                            "warning",
                            "bad-mx-rollup",
                            f"expected 'mx HOST NAME [rollup-by-ip]', got {d.name} {d.value}",
                            d.loc,
                        )
                    )
                    continue
                by_ip = any(p.lower() == "rollup-by-ip" for p in parts[2:])
                cfg.mx_rollups.append(MxRollup(parts[0].lower().rstrip("."), parts[1], by_ip, d.loc))
        elif blk.tag == "smtp-pattern-list":
            pl_ = cfg.pattern_lists.setdefault(blk.arg, SmtpPatternList(name=blk.arg, loc=blk.loc))
            for d in blk.directives():
                if d.name == "include":
                    continue
                if d.name != "reply":
                    note_unknown(f"smtp-pattern-list:{blk.arg}", d)
                    continue
                rule = parse_reply(d.value, d.loc, cfg.issues)
                if rule:
                    pl_.rules.append(rule)
        elif blk.tag == "acct-file":
            af = AcctFile(path=unquote(blk.arg), loc=blk.loc)
            for d in blk.directives():
                if d.name == "include":
                    continue
                note_unknown(f"acct-file:{blk.arg}", d)
                af.directives.append(d)
                if d.name == "records":
                    af.records = tuple(r.strip() for r in d.value.split(",") if r.strip())
                elif d.name == "record-fields":
                    rtype, _, fields = d.value.partition(" ")
                    af.record_fields[rtype.strip()] = fields.strip()
            cfg.acct_files.append(af)
        elif blk.tag == "source":
            sr = SourceRule(name=blk.arg, loc=blk.loc)
            for d in blk.directives():
                if d.name == "include":
                    continue
                note_unknown(f"source:{blk.arg}", d)
                sr.directives.append(d)
            cfg.sources.append(sr)
        else:
            cfg.other_blocks.append(blk)

    _check_pools(cfg)
    return cfg


def _virtual_mta(cfg: PmtaConfig, blk: Block, domain_block, note_unknown) -> None:
    name = blk.arg
    if name in cfg.vmtas:
        cfg.issues.append(
            Issue("warning", "duplicate-vmta", f"virtual-mta {name} defined again (merged)", blk.loc)
        )
    v = cfg.vmtas.setdefault(name, VirtualMta(name=name, loc=blk.loc))
    for c in blk.children:
        if isinstance(c, Block):
            if c.tag == "domain":
                v.domains.append(domain_block(c, "vmta", name))
            else:
                cfg.issues.append(
                    Issue(
                        "warning", "nested-block", f"<{c.tag}> inside <virtual-mta {name}> kept aside", c.loc
                    )
                )
                cfg.other_blocks.append(c)
            continue
        if c.name == "include":
            continue
        note_unknown(f"vmta:{name}", c)
        if c.name == "smtp-source-host":
            spec, _, host = c.value.partition(" ")
            v.source_hosts.extend(expand_source_host(spec, host.strip() or None, c.loc, cfg.issues))
        elif c.name == "domain-key":
            key = parse_domain_key(c.value, c.loc, "vmta", name, cfg.issues)
            if key:
                cfg.domain_keys.append(key)
        v.directives.append(c)


def _pool(cfg: PmtaConfig, blk: Block, domain_block, note_unknown) -> None:
    name = blk.arg
    if name in cfg.pools:
        cfg.issues.append(
            Issue("warning", "duplicate-pool", f"virtual-mta-pool {name} defined again (merged)", blk.loc)
        )
    p = cfg.pools.setdefault(name, VmtaPool(name=name, loc=blk.loc))
    for c in blk.children:
        if isinstance(c, Block):
            if c.tag == "domain":
                p.domains.append(domain_block(c, "pool", name))
            else:
                cfg.issues.append(
                    Issue(
                        "warning",
                        "nested-block",
                        f"<{c.tag}> inside <virtual-mta-pool {name}> kept aside",
                        c.loc,
                    )
                )
                cfg.other_blocks.append(c)
            continue
        if c.name == "include":
            continue
        note_unknown(f"pool:{name}", c)
        if c.name == "virtual-mta":
            p.members.append((unquote(c.value), c.loc))
        elif c.name == "domain-key":
            key = parse_domain_key(c.value, c.loc, "pool", name, cfg.issues)
            if key:
                cfg.domain_keys.append(key)
        p.directives.append(c)


def _check_pools(cfg: PmtaConfig) -> None:
    for p in cfg.pools.values():
        for member, loc in p.members:
            if member not in cfg.vmtas:
                cfg.issues.append(
                    Issue(
                        "warning",
                        "unknown-pool-member",
                        f"pool {p.name} lists undefined virtual-mta {member}",
                        loc,
                    )
                )
        if p.name in cfg.vmtas:
            cfg.issues.append(
                Issue("error", "pool-name-clash", f"pool {p.name} has the name of a virtual-mta", p.loc)
            )
    for v in cfg.vmtas:
        with_domains = [p for p in cfg.pools_of(v) if cfg.pools[p].domains]
        if len(with_domains) > 1:
            cfg.issues.append(
                Issue(
                    "error",
                    "vmta-in-several-pools-with-domains",
                    f"virtual-mta {v} is in pools {', '.join(with_domains)} which all define <domain> blocks",
                    cfg.vmtas[v].loc,
                )
            )


def parse_node(node_dir: str | Path, *, node: str | None = None, strict: bool = False) -> PmtaConfig:
    """Parse ``landing/pmta-config/<node>/`` into a :class:`PmtaConfig` (node defaults to the folder name)."""
    node_dir = Path(node_dir)
    root, files, issues = read_config_tree(node_dir, strict=strict)
    return interpret(root, node=node or node_dir.name, files=files, issues=issues)


def parse_text(text: str, *, node: str = "node", strict: bool = False) -> PmtaConfig:
    root, issues = read_config_text(text, strict=strict)
    return interpret(root, node=node, files=[MAIN_FILE], issues=issues)


def parse_estate(config_root: str | Path, *, strict: bool = False) -> list[PmtaConfig]:
    """Every ``<node>/`` folder under ``landing/pmta-config`` that has a main ``config`` file, by name."""
    root = Path(config_root)
    if not root.is_dir():
        return []
    return [
        parse_node(d, strict=strict)
        for d in sorted(root.iterdir())
        if d.is_dir() and (d / MAIN_FILE).exists()
    ]


# --------------------------------------------------------------------------------------------------
# effective per-domain settings


@dataclass(frozen=True)
class EffectiveSetting:
    vmta: str | None  # None: traffic without a VirtualMTA (global scope only)
    pattern: DomainPattern
    directive: str
    qualifier: str  # first token for per-CIDR directives (source-ip-*), else ""
    value: str
    scope: str  # global | pool | vmta — where the winning value was written
    scope_name: str | None
    source_pattern: DomainPattern
    loc: Loc


# Directives whose first value token is a key (several lines with different keys coexist).
KEYED_DIRECTIVES = frozenset(
    {
        "source-ip-max-msg-rate",
        "source-ip-max-smtp-out",
        "source-ip-max-connect-rate",
        "source-ip-max-data-volume-rate",
    }
)


def _labels_under(domain: str, suffix: str) -> bool:
    return domain.endswith("." + suffix)


def pattern_applies(q: DomainPattern, p: DomainPattern) -> bool:
    """Does pattern ``q`` apply to the domains pattern ``p`` stands for?

    ``p`` is evaluated at a representative domain: an exact pattern at itself; ``*.x`` at a generic
    proper subdomain of ``x``; ``[*.]x`` at the apex ``x`` *as the wildcard sees it* (an exact ``x``
    block has its own row, so exact patterns are not applied here); ``*`` only by ``*``.
    """
    if q.kind == "all":
        return True
    if p.kind == "all":
        return False
    if p.kind in ("exact", "other"):
        d = p.suffix
        if q.kind in ("exact", "other"):
            return q.suffix == d
        if q.kind == "subdomains":
            return _labels_under(d, q.suffix)
        return d == q.suffix or _labels_under(d, q.suffix)
    if p.kind == "subdomains":
        if q.kind in ("exact", "other"):
            return False
        return p.suffix == q.suffix or _labels_under(p.suffix, q.suffix)
    # domain_and_subdomains, at the apex
    if q.kind in ("exact", "other"):
        return False
    if q.kind == "subdomains":
        return _labels_under(p.suffix, q.suffix)
    return p.suffix == q.suffix or _labels_under(p.suffix, q.suffix)


def _scopes_for(cfg: PmtaConfig, vmta: str | None) -> list[list[DomainBlock]]:
    scopes = [cfg.domains]
    if vmta is not None:
        for p in cfg.pools_of(vmta):
            if cfg.pools[p].domains:
                scopes.append(cfg.pools[p].domains)
        scopes.append(cfg.vmtas[vmta].domains)
    return scopes


def effective_settings(
    cfg: PmtaConfig, vmta: str | None, pattern: DomainPattern
) -> dict[tuple[str, str], EffectiveSetting]:
    """Effective settings of one (VMTA, pattern) view, keyed by (directive, qualifier).

    The pattern need not be configured in every scope (a pattern written only inside a VMTA can be
    evaluated for the global view, giving what that VMTA would inherit). Rule: see
    :func:`effective_domain_rules`.
    """
    merged: dict[tuple[str, str], EffectiveSetting] = {}
    for blocks in _scopes_for(cfg, vmta):
        cands = []
        for order, b in enumerate(blocks):
            for q in b.patterns:
                if q.text == pattern.text or pattern_applies(q, pattern):
                    cands.append((q.specificity, order, q, b))
        cands.sort(key=lambda t: (t[0], t[1]))
        for _spec, _order, q, b in cands:
            for d in b.directives:
                if d.name == "domain-key":
                    continue
                tokens = d.value.split()
                qual = tokens[0] if d.name in KEYED_DIRECTIVES and tokens else ""
                value = d.value[len(qual) :].strip() if qual else d.value
                merged[(d.name, qual)] = EffectiveSetting(
                    vmta=vmta,
                    pattern=pattern,
                    directive=d.name,
                    qualifier=qual,
                    value=value,
                    scope=b.scope,
                    scope_name=b.scope_name,
                    source_pattern=q,
                    loc=d.loc,
                )
    return merged


def view_patterns(cfg: PmtaConfig, vmta: str | None) -> list[DomainPattern]:
    """Patterns configured in the scopes a view inherits from, in order of first appearance."""
    patterns: list[DomainPattern] = []
    seen: set[str] = set()
    for blocks in _scopes_for(cfg, vmta):
        for b in blocks:
            for p in b.patterns:
                if p.text not in seen:
                    seen.add(p.text)
                    patterns.append(p)
    return patterns


def effective_domain_rules(cfg: PmtaConfig) -> list[EffectiveSetting]:
    """Effective settings per (VMTA, configured pattern, directive) after PowerMTA inheritance.

    Order of application, each step overriding the previous one: global scope, then the pool scope(s)
    the VMTA belongs to, then the VMTA's own ``<domain>`` blocks. Inside one scope the matching
    patterns are merged from general to specific (PowerMTA guide §3.3.10): ``*`` < ``[*.]x`` <
    ``*.x`` < exact, a longer suffix beating a shorter one whatever its form (``[*.]a.x.com`` beats
    ``*.x.com``), an explicitly written pattern beating the same pattern produced by a macro, and a
    later block beating an earlier one. The rows for ``vmta=None`` describe traffic sent without a
    VirtualMTA (global scope only).
    """
    out: list[EffectiveSetting] = []
    for vmta in [None, *cfg.vmtas]:
        for p in view_patterns(cfg, vmta):
            merged = effective_settings(cfg, vmta, p)
            out.extend(merged[k] for k in sorted(merged))
    return out


def iter_all_directives(cfg: PmtaConfig) -> list[tuple[str, str, Directive, Loc | None]]:
    """Every directive of the tree as (scope label, block path, directive, enclosing block's loc), in file order.

    Block tags are items too: name ``<tag>``, value the tag's argument.
    """

    def walk(blk: Block, scope: str, path: str, parent: Loc | None):
        for c in blk.children:
            if isinstance(c, Directive):
                yield scope, path, c, parent
                continue
            label = f"<{c.tag}{' ' + c.arg if c.arg else ''}>"
            if c.tag == "virtual-mta":
                inner_scope = f"vmta:{c.arg}"
            elif c.tag == "virtual-mta-pool":
                inner_scope = f"pool:{c.arg}"
            elif c.tag == "domain":
                inner_scope = scope
            else:
                inner_scope = f"{c.tag}:{c.arg}" if c.arg else c.tag
            yield scope, path, Directive(name=f"<{c.tag}>", value=c.arg, loc=c.loc), parent
            yield from walk(c, inner_scope, f"{path} {label}".strip(), c.loc)

    if cfg.tree is None:
        return []
    return list(walk(cfg.tree, "global", "", None))
