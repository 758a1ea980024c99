"""Request bodies decoded as strict JSON: everything the server stores can be written back out as JSON.

Python's :func:`json.loads` accepts more than RFC 8259: the tokens ``NaN``,
``Infinity`` and ``-Infinity``, numbers too large for a float (``1e999``
becomes ``inf``), lone UTF-16 surrogates (``"\\ud800"``), which no UTF-8 text
can hold, and integers of any length (up to Python's 4,300-digit conversion
limit, past which it raises an unrelated ``ValueError``). A body holding any
of them would be accepted, stored, and then fail every response that echoes
it. :func:`loads_strict` refuses them, and nesting deeper than a limit, with a
:class:`BodyError` naming what and where.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

#: deepest nesting of arrays and objects accepted (IonQ bodies need 5: job, input, circuits, circuit, gate)
MAX_DEPTH = 32
#: longest integer literal accepted, digits: any such integer converts to a finite float (below 1.8e308)
MAX_INT_DIGITS = 308

#: a ``\uD800``-``\uDFFF`` escape: the only way a JSON text can spell a surrogate (UTF-8 cannot)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
#: maps every digit to ``0`` and ``E`` to ``e``, so that two substring searches find long numbers
_NUMBER_SHAPES = bytes.maketrans(b"123456789E", b"000000000e")
#: a run of digits longer than :data:`MAX_INT_DIGITS` (maybe inside a string: then only a false alarm)
_LONG_DIGITS = b"0" * (MAX_INT_DIGITS + 1)
#: an exponent of 3 or more digits: with long digit runs, the only ways to spell a number out of a float's range
_BIG_EXPONENTS = (b"e000", b"e+000")
#: a JSON string literal, escapes included
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
#: every byte but the brackets and the double quote (deleted to leave a body's skeleton)
_NOT_SKELETON = bytes(b for b in range(256) if b not in b'[]{}"')
_STEP = np.zeros(256, dtype=np.int64)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1


class BodyError(ValueError):
    """A request body that is not strict JSON, with a message for the client."""


def _constant(token: str) -> float:
    raise BodyError(f"{token} is not a JSON number (non-finite numbers are refused)")


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise BodyError(f"an integer of {digits} digits exceeds the limit of {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is out of a 64-bit float's range")
    return value


#: decoders by (integers checked, floats checked): built once (``json.loads`` with hooks builds one per call)
_DECODERS = {(ints, floats): json.JSONDecoder(parse_constant=_constant, parse_int=_integer if ints else None,
                                              parse_float=_float if floats else None)
             for ints in (False, True) for floats in (False, True)}


def _depth(raw: bytes) -> int:
    """Deepest nesting of a valid JSON text: its brackets outside strings, counted (vectorised)."""
    if b'\\"' in raw:  # an escaped quote (rare): remove the strings the slow way
        raw = _STRING.sub(b"", raw)
    codes = np.frombuffer(raw.translate(None, _NOT_SKELETON), dtype=np.uint8)
    if not codes.size:
        return 0
    outside = (np.cumsum(codes == ord('"')) & 1) == 0  # an even number of quotes before: not in a string
    return int(np.cumsum(_STEP[codes] * outside).max())


def _check_strings(value: Any) -> None:
    """Refuse a lone surrogate in any string or key, naming where it is (walked without recursion)."""
    stack: list[tuple[Any, _Link]] = [(value, None)]
    while stack:
        node, link = stack.pop()
        if isinstance(node, dict | list):
            for key, item in node.items() if isinstance(node, dict) else enumerate(node):
                if isinstance(key, str):
                    _check_string(key, (link, key), "an object key")
                stack.append((item, (link, key)))
        elif isinstance(node, str):
            _check_string(node, link, "a string")


#: where a value sits: None for the body itself, else ``(parent's link, key or index)``
_Link = tuple[Any, Any] | None


def _where(link: _Link) -> str:
    steps = []
    while link is not None:
        link, step = link
        steps.append(f"[{step!r}]")
    return "body" + "".join(reversed(steps))


def _check_string(text: str, link: _Link, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError(f"{_where(link)}: {what} holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                        "which is not Unicode text") from None


def loads_strict(raw: bytes) -> Any:
    """Decode a request body (UTF-8 JSON text); None if it is empty.

    Costs little more than :func:`json.loads`: the slower checks run only
    when a regular-expression scan of the text finds what they look for.

    Raises:
        BodyError: invalid UTF-8 or JSON, ``NaN``/``Infinity``, a number out
            of a float's range, an integer over :data:`MAX_INT_DIGITS` digits,
            a lone surrogate, or nesting over :data:`MAX_DEPTH`.
    """
    if not raw:
        return None
    shapes = raw.translate(_NUMBER_SHAPES)
    long_digits = _LONG_DIGITS in shapes
    big = long_digits or any(exponent in shapes for exponent in _BIG_EXPONENTS)
    try:
        value = _DECODERS[long_digits, big].decode(raw.decode("utf-8"))
    except BodyError:
        raise
    except RecursionError:
        raise BodyError(f"JSON nested deeper than the limit of {MAX_DEPTH} levels") from None
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BodyError(f"request body is not valid JSON: {error}") from None
    depth = _depth(raw)
    if depth > MAX_DEPTH:
        raise BodyError(f"JSON nested {depth} levels deep exceeds the limit of {MAX_DEPTH} levels")
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw):
        _check_strings(value)
    return value


__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "BodyError", "loads_strict"]
