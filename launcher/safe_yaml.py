"""Read YAML a user hands us (sweep files, cluster profiles) without trusting its size or shape.

    read(path, *, what="sweep file") -> Any        the one way launcher code reads a user's YAML
    loads(text, *, file=None) -> Any               the same for text already in hand

yaml.safe_load refuses to build objects, but not to build big ones: a dozen lines of aliases
(`b: [*a, *a, ...]`, nine levels of nine: the "billion laughs" file) compose into a graph
whose tree holds 10^9 nodes. PyYAML builds it cheaply by sharing; it is every later walk of
the tree (dialect detection, json.dumps of the spec, plans) that expands it and never ends.
Very deep nesting (`[[[[...`) ends in a RecursionError traceback in PyYAML's recursive composer,
and a huge file in minutes of parsing. So this module composes the document itself, counting
as it goes, and refuses with one UserError line as soon as a limit is passed:

    MAX_BYTES  256 KiB   checked with stat before reading, and by a bounded read (pipes, /dev/*).
                         Sweep files and profiles are a few KB (a grid listing 10,000 values,
                         launcher.dialects' limit per key, is about 60 KB). A file this size
                         parses in under a second on the shared 2-core machine under load
                         (0.45 s block style, 0.8 s dense flow; libyaml's parser).
    MAX_DEPTH  100       nesting levels; real files nest under 10, and Python's recursion limit
                         (about 300 levels in PyYAML's composer) is never reached.
    MAX_NODES  100,000   nodes of the tree after alias expansion, counted arithmetically: an
                         alias adds the size of the node it names (remembered when that node
                         was composed), never a walk of it. A billion-laughs file is refused
                         at the alias that crosses the limit, in about a millisecond; a
                         tree this size is walked by our dialect code in a fraction of a second.

An alias to a node that is still being composed (`&a [*a]`) makes a cyclic graph that no
walk ends on: refused too. Merge keys (`<<: *base`) are aliases and counted the same way.

libyaml's parser is used when PyYAML has it (3 to 4 times faster than the pure-Python one); the
composition, where the counting happens, is always PyYAML's Python composer, so both
behave alike.
"""
from __future__ import annotations

import os
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver

from jobs.errors import UserError

MAX_BYTES = 256 << 10
MAX_DEPTH = 100
MAX_NODES = 100_000


class LimitError(yaml.YAMLError):
    """The document passes one of this module's limits (message: what, where)."""

    def __init__(self, message: str, fix: str, mark: Any = None) -> None:
        where = f" (line {mark.line + 1})" if mark is not None else ""
        super().__init__(message + where)
        self.fix = fix


class _Limits(Composer):
    """PyYAML's composer, counting nodes after alias expansion and nesting depth as it goes."""

    max_nodes = MAX_NODES
    max_depth = MAX_DEPTH

    def _start_counting(self) -> None:
        self._nodes = 0          # nodes of the expanded tree composed so far
        self._depth = 0
        self._sizes: dict[str, int] = {}   # anchor -> expanded size of its node
        self._open: set[str] = set()       # anchors whose node is being composed

    def _add(self, n: int, event: Any) -> None:
        self._nodes += n
        if self._nodes > self.max_nodes:
            raise LimitError(f"the YAML expands to more than {self.max_nodes:,} values"
                             + (" through its aliases (*name)" if isinstance(event, AliasEvent) else ""),
                             "a sweep file holds a few hundred values: remove the repeated aliases "
                             "or split the file", event.start_mark)

    def compose_document(self) -> Any:
        self._start_counting()
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in self._open:
                raise LimitError(f"the alias *{event.anchor} refers to a node that contains it",
                                 "an alias can only repeat a node that ends before it", event.start_mark)
            # An undefined alias has no size: PyYAML's composer then says "found undefined alias".
            self._add(self._sizes.get(event.anchor, 0), event)
            return super().compose_node(parent, index)
        if self._depth >= self.max_depth:
            raise LimitError(f"the YAML nests more than {self.max_depth} levels deep",
                             "sweep files nest a few levels: flatten the structure", event.start_mark)
        before = self._nodes
        self._add(1, event)
        anchor = event.anchor
        if anchor is not None:
            self._open.add(anchor)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        if anchor is not None:
            self._open.discard(anchor)
            self._sizes[anchor] = self._nodes - before
        return node


class LimitedSafeLoader(_Limits, yaml.SafeLoader):
    """yaml.SafeLoader (pure Python) with the limits."""

    def __init__(self, stream: Any) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self._start_counting()


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    Loader: type = LimitedSafeLoader
else:
    class LimitedCSafeLoader(_Limits, CParser, SafeConstructor, Resolver):
        """libyaml's parser (events only) under the counting Python composer and the safe constructor."""

        def __init__(self, stream: Any) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._start_counting()

    Loader = LimitedCSafeLoader


def loads(text: str, *, file: str | None = None, loader: type | None = None) -> Any:
    """The single YAML document in `text`; a syntax error or a passed limit is one UserError line."""
    instance = (loader or Loader)(text)
    try:
        return instance.get_single_data()
    except LimitError as exc:
        raise UserError(f"refused: {exc}", file=file, fix=exc.fix) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"invalid YAML{where}: {problem}", file=file,
                        fix="fix the YAML syntax (indentation, quotes, a missing ':')") from None
    finally:
        instance.dispose()


def _too_large(file: str, what: str) -> UserError:
    return UserError(f"refused: the file is larger than {MAX_BYTES >> 10} KiB", file=file,
                     fix=f"a {what} is a few KB: check that this is the file you meant")


def read(path: str | os.PathLike[str], *, what: str = "sweep file") -> Any:
    """The single YAML document of the file at `path` (None when empty), read within the limits.

    `what` names the file in the fixes ("sweep file", "cluster profile").
    """
    file = str(path)
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_BYTES:
                raise _too_large(file, what)
            # stat says 0 for pipes and devices: read one byte past the limit to know.
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UserError("no such file", file=file, fix=f"check the path of the {what}") from None
    except OSError as exc:  # a directory, no permission, ...
        raise UserError(f"cannot read the file ({exc.__class__.__name__})", file=file,
                        fix=f"pass a readable YAML {what}") from None
    if len(data) > MAX_BYTES:
        raise _too_large(file, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("cannot read the file (not UTF-8 text)", file=file,
                        fix=f"pass a readable YAML {what}") from None
    return loads(text, file=file)


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "LimitError", "LimitedSafeLoader", "Loader", "loads", "read"]
