"""Input text (CSV, YAML) read into memory within bounds, from files or pipes.

- A table or a YAML is refused above a size (:data:`MAX_TABLE_BYTES`, :data:`MAX_YAML_BYTES`)
  before it is read, where the file system tells the size, else once that many bytes came in
  (``/dev/zero``, a pipe): a 10 GB file is never read into memory.
- A first line (a CSV's header) is read up to :data:`MAX_LINE_BYTES`.
- Pipes and other readable non-regular files (``--labels <(…)``, ``/dev/fd/N``, a FIFO) are read
  once and kept for the rest of the run, since a second read of a pipe finds it empty.
- YAML is read without aliases (``*name``): nested aliases expand a few hundred bytes into
  billions of values ("billion laughs"), and no file of this project needs them.
- :func:`shorten` is the form of a value a message may quote: never a huge ``repr``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

MAX_TABLE_BYTES = 128 * 2**20
"""The largest CSV read into memory (RSNA's label CSV is 1.5 MB; a raw table of 3,000 images about 50 MB)."""
MAX_YAML_BYTES = 2**20
"""The largest YAML read (the project's own are under 1 kB)."""
MAX_LINE_BYTES = 2**20
"""The longest first line read to tell what a file holds."""

_piped: dict[str, bytes] = {}
"""What was read from non-regular files, by absolute path: a pipe gives its bytes only once."""


class InputSizeError(ValueError):
    """An input larger than the bound of its kind; the message names the file and the bound."""


def _size_text(count: int) -> str:
    """``1048576`` → ``'1 MB'``, ``4`` → ``'4 bytes'``."""
    return f"{count / 2**20:g} MB" if count >= 2**20 else f"{count} bytes"


def read_input(path: Path | str, limit: int = MAX_TABLE_BYTES) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them, else :class:`InputSizeError`; ``OSError`` where it cannot be read.

    >>> read_input("/dev/zero", limit=4)
    Traceback (most recent call last):
    ...
    pneumo_yolo.limits.InputSizeError: /dev/zero: more than 4 bytes; this is not the file meant (the limit is there to protect memory)
    """
    key = os.path.abspath(path)
    if key in _piped:
        return _piped[key]
    with open(path, "rb") as handle:
        regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
        if regular and os.fstat(handle.fileno()).st_size > limit:
            raise _too_big(path, limit)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _too_big(path, limit)
    if not regular:
        _piped[key] = data
    return data


def _too_big(path: Path | str, limit: int) -> InputSizeError:
    return InputSizeError(
        f"{path}: more than {_size_text(limit)}; this is not the file meant (the limit is there to protect memory)"
    )


def read_input_text(path: Path | str, limit: int = MAX_TABLE_BYTES) -> str:
    """:func:`read_input` decoded as UTF-8, a byte-order mark dropped (``UnicodeDecodeError`` for other bytes)."""
    return read_input(path, limit).decode("utf-8-sig")


def first_line(path: Path | str) -> str:
    """The first line of a text file (a CSV's header), a UTF-8 byte-order mark dropped, at most :data:`MAX_LINE_BYTES`.

    Raises ``OSError``, ``UnicodeDecodeError``, or :class:`InputSizeError` for a longer line.
    """
    key = os.path.abspath(path)
    if key in _piped or not os.path.isfile(path):
        line = read_input(path)[: MAX_LINE_BYTES + 1].split(b"\n", 1)[0]
    else:
        with open(path, "rb") as handle:
            line = handle.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
        raise InputSizeError(
            f"{path}: its first line is longer than {_size_text(MAX_LINE_BYTES)}; not a CSV or text file"
        )
    return line.decode("utf-8-sig")


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` without aliases; any problem raises a ``yaml.YAMLError`` of one line that names its place.

    >>> load_yaml("a: 1")
    {'a': 1}
    >>> load_yaml("a: &x [1]\\nb: *x")
    Traceback (most recent call last):
    ...
    yaml.error.YAMLError: YAML aliases (*name) are not accepted: write the value out (line 2, column 4)
    """
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "YAML aliases (*name) are not accepted: write the value out",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=NoAliases)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise yaml.YAMLError(f"{error.problem or error.context}{where}") from None


def read_yaml(path: Path | str) -> Any:
    """A YAML file of at most :data:`MAX_YAML_BYTES`, read by :func:`load_yaml`.

    Raises ``OSError``, ``UnicodeDecodeError``, :class:`InputSizeError` or ``yaml.YAMLError``.
    """
    return load_yaml(read_input_text(path, MAX_YAML_BYTES))


def shorten(value: object, length: int = 60) -> str:
    """``repr(value)``, cut to ``length`` characters (a long list or string is built only as far as needed).

    >>> shorten(list(range(100)), 20)
    '[0, 1, 2, 3, 4, 5, …'
    """
    if isinstance(value, (list, tuple, dict, set)) and len(value) > length:
        value = type(value)(list(value)[:length]) if not isinstance(value, dict) else dict(list(value.items())[:length])
    text = repr(value) if not isinstance(value, str) or len(value) <= 4 * length else repr(value[: 4 * length])
    return text if len(text) <= length else text[: length - 1] + "…"
