"""Files: input read strictly (YAML 1.2 / JSON, a repeated key an error) and output
(exports, checkpoints) checked before the work, written whole or not at all.

An output's directory must exist, as a SQLite database's must: a typo in ``-o`` or ``--save``
is refused with one line, not answered by a new directory tree. Only a directory that is
itself the output (a report's, the data directory) is created, in a directory that exists,
and it is removed again when the command fails (``new_directory``).

A file is written to a temporary name in its own directory and renamed over the target, so a
reader (or a crash) never sees half of it. Two kinds of target are not replaced: a symbolic
link is followed and the file it points to is replaced (the link stays), and a target that
exists but is no regular file (``/dev/stdout``, a FIFO, a terminal) is written through, since
there is nothing to rename over and replacing a device would need root and break the system.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from hpsearch.errors import ConfigError, UsageError


def check_writable(path: Path) -> None:
    """Raise UsageError now if ``path`` could not be written later (before hours of work)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give the name of a file in it")
    target = _target(path)
    if target.exists() and not target.is_file():
        if not os.access(target, os.W_OK):
            raise UsageError(f"{path}: cannot write: permission denied")
        return
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{path}: cannot write: {ancestor} is a file, not a directory")
    if ancestor != target.parent:
        raise UsageError(f"{path}: cannot write: {_missing(target.parent)}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: cannot write in {ancestor}: permission denied")


def _missing(directory: Path) -> str:
    return f"directory {directory.absolute()} does not exist (create it first)"


@contextlib.contextmanager
def new_directory(path: Path, *, parents: bool = False, what: str = "directory") -> Iterator[Path]:
    """``path`` as a directory for the body to fill, created if absent; when the body fails,
    what was created is removed again if it is still empty, so a failed command leaves no
    stray tree. A missing parent is refused (UsageError) before anything is created, unless
    ``parents`` (for a default location the user did not name)."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    created = [path, *itertools.takewhile(lambda p: not p.exists(), path.parents)]
    if len(created) > 1 and not parents:
        raise UsageError(f"{path}: cannot create the {what}: {_missing(path.parent)}")
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        if not path.is_dir():
            raise UsageError(f"{path}: cannot create the {what}: {exc.strerror or exc}") from None
        created = []  # another process made it meanwhile: it is theirs to keep
    try:
        yield path
    except BaseException:
        for directory in created:  # the deepest first; a directory holding files stays
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see the module docstring."""

    def write(target: Path) -> None:
        with open(target, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)

    write_with(path, write)


def write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a temporary file, then rename it to ``path`` (or write through a
    device). OS errors become one UsageError naming ``path``; no temporary file is left."""
    path = Path(path)
    check_writable(path)
    target = _target(path)
    if target.exists() and not target.is_file():
        try:
            write(target)
        except OSError as exc:
            raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
        return
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        # mkstemp makes the file private (0o600); the output gets what open() would give it.
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, target)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _target(path: Path) -> Path:
    """The file to replace: a symbolic link's destination (even a dangling one), else path.
    A link to something that is no regular file (``/dev/stdout``) is written through as is."""
    if path.is_symlink() and not (path.exists() and not path.is_file()):
        return Path(os.path.realpath(path))
    return path


def umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere it can only be read by setting
    it, which other threads could see for an instant (so the placeholder is the strict 0o077)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


# --- input: YAML 1.2 and JSON -------------------------------------------------------------


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error's reason on one line (a reader error has no ``problem``, only lines)."""
    return getattr(exc, "problem", None) or str(exc).splitlines()[0]


_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _is_merge_key(node: object) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's plain scalars and no repeated keys.

    PyYAML follows YAML 1.1, where ``yes``/``no``/``on``/``off`` are booleans, ``010`` is
    octal 8, ``1:30`` is base-60 (90) and ``1e-3`` is a string. Here only true/false are
    booleans, integers are decimal (``1_000`` too) or 0x/0o, ``1e-3`` is a float, dates stay
    strings, and a key given twice in one mapping is an error, not the last one winning.
    """

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        # An alias repeats a node by reference: nine levels of nine-way aliases are 9**9
        # values once expanded (and in any message that shows one). Only a merge key's
        # (``<<: *base``) is read, which copies keys and so grows with the file, not past it.
        if self.check_event(yaml.AliasEvent) and not _is_merge_key(index):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are allowed only as `<<: *name`", mark
            )
        return super().compose_node(parent, index)  # type: ignore[arg-type]

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r} (first at line {seen[key] + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    digits = text.lstrip("+-")
    base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
    value = int(digits[2:] if base != 10 else digits, base)
    return -value if text.startswith("-") else value


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_constructor(_INT, _construct_int)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML safely, with YAML 1.2's numbers and booleans (``_Loader``)."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no arbitrary objects


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(f"duplicate key {key!r} in one object; keep one")
        seen[key] = value
    return seen


def json_load(text: str) -> Any:
    """Parse JSON; a key given twice in one object is an error (as in YAML files, ``_Loader``),
    not the last one silently winning."""
    return json.loads(text, object_pairs_hook=_unique_keys)


# A config or study file is a few kilobytes: a wrong path (a disk image, a log) is refused
# instead of being read whole into memory.
MAX_INPUT_BYTES = 16 * 2**20
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def open_regular(path: Path, *, expected: str) -> BinaryIO:
    """Open ``path`` for reading in binary, if it is a regular file; else one ConfigError line.

    It is opened without blocking and checked on the open descriptor: opening a FIFO would
    wait for a writer for ever, and ``/dev/zero`` never ends.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if (problem := not_regular(os.fstat(fd).st_mode)) is not None:
        os.close(fd)
        raise ConfigError(f"{path}: {problem}; expected {expected}")
    return os.fdopen(fd, "rb")


def not_regular(mode: int) -> str | None:
    """What a file of ``mode`` (``os.stat``'s) is, said as "a FIFO, not a regular file";
    None for a regular file."""
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFREG:
        return None
    return f"{_KINDS.get(kind, 'something else')}, not a regular file"


def read_mapping(path: Path, *, expected: str = "a YAML or JSON file") -> dict[str, Any]:
    """Read a YAML or JSON file into a dict; syntax errors name the file and line.

    ``expected`` says, when the path is no regular file or its bytes are no text, what the
    file should have been.
    """
    try:
        with open_regular(path, expected=expected) as handle:
            raw = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_INPUT_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_INPUT_BYTES // 2**20} MB; expected {expected}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); expected {expected}"
        ) from None
    try:
        data = json_load(text) if path.suffix == ".json" else yaml_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = yaml_problem(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def is_zip(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts like a zip archive (torch.save's
    format)."""
    with contextlib.suppress(OSError, ConfigError), open_regular(path, expected="") as handle:
        return handle.read(4) == b"PK\x03\x04"
    return False


def fingerprint(path: Path) -> dict[str, Any]:
    """A file's size and sha256: what a study stores to notice that its data files changed."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}
