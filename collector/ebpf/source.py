"""The BPF C program as one text: a .c file with the headers beside it inlined.

Why not ``BPF(src_file=...)`` and let the compiler include them: bcc (0.26)
reads the file into memory and compiles it as /virtual/main.c, so a quoted
include is not looked for beside the file, and bcc rewrites map calls
(``flows_a.lookup(&k)``) only in that main file: a header the compiler
included keeps them as written, and its programs fail to load ("unknown
opcode"). So the headers are inlined here, between ``#line`` markers that keep
the compiler's messages naming the header and its line.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["define_lines", "inline_includes", "standalone"]

# `#include "x.h"` of a file beside the including one (no directory part).
_LOCAL_INCLUDE = re.compile(r'^#include "([^"/]+)"[ \t]*$')


def inline_includes(path: Path, _seen: set[str] | None = None) -> str:
    """The C at ``path``, each ``#include "x.h"`` of a file beside it replaced
    by that file's text, inlined once (the headers have include guards)."""
    seen = set() if _seen is None else _seen
    seen.add(path.name)
    out = [f'#line 1 "{path.name}"\n']
    lines = path.read_text().splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        match = _LOCAL_INCLUDE.match(line)
        if match is None:
            out.append(line)
            continue
        header = path.with_name(match[1])
        if match[1] in seen:
            out.append(f"/* {match[1]}: inlined above */\n")
            continue
        out.append(inline_includes(header, seen))
        out.append(f'#line {number + 1} "{path.name}"\n')
    return "".join(out)


def define_lines(cflags: list[str]) -> str:
    """The ``-D`` flags among ``cflags`` as the ``#define`` lines they stand for.

    >>> print(define_lines(["-DHAVE_FIB4", "-DFLOW_MAP_SIZE=16384", "-Wall"]), end="")
    #define HAVE_FIB4
    #define FLOW_MAP_SIZE 16384
    """
    lines = []
    for flag in cflags:
        if flag.startswith("-D"):
            name, _, value = flag[2:].partition("=")
            lines.append(f"#define {name} {value}".rstrip() + "\n")
    return "".join(lines)


def standalone(text: str, cflags: list[str]) -> str:
    """``text`` as compiled with ``cflags``, in one text that compiles alone:
    the flags named in a comment, then defined.

    >>> print(standalone("int x = N;\\n", ["-DN=3"]), end="")
    /* cflags: -DN=3 */
    #define N 3
    int x = N;
    """
    return f"/* cflags: {' '.join(cflags) or '(none)'} */\n{define_lines(cflags)}{text}"
