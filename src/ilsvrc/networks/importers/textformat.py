"""A reader of protobuf's text format, enough for Caffe's prototxt files, with no schema.

    name: "AlexNet"                          a field: a name, a colon, a value
    layer { name: "conv1" type: "Convolution"   a message: a name, an optional colon, { ... } or < ... >
            convolution_param { num_output: 96 kernel_size: 11 } }
    input_dim: 10  input_dim: 3              a field given twice is repeated (a list)
    dim: [1, 3, 224, 224]                    or a list in brackets
    pool: MAX  bias_term: false              an enum or a truth value: an identifier
    # a comment runs to the end of the line; "," or ";" may follow a field

Strings are in double or single quotes with C escapes, and adjacent strings join. Numbers are decimal,
hexadecimal or octal integers, or floats (`1e-4`, `.5`, `0.5f`, `inf`, `nan`), with an optional sign.
Values are returned as `str` (strings), `Ident` (identifiers: enums and true/false), `int`, `float` or
`Message`. Every error names the line and column.

Why not protobuf's own `text_format`: it parses against a message definition, which would mean
shipping Caffe's caffe.proto compiled (protoc is not here, and descriptor building by hand is longer
than this reader); it also refuses any field the definition lacks, while Caffe files in the wild carry
fields of many Caffe forks. Without a schema, the importer decides what each field means and names
the ones it does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ...errors import SpecFileError


class Ident(str):
    """An unquoted identifier: an enum value (`MAX`, `TRAIN`) or `true`/`false`."""


@dataclass
class Message:
    """A message: its fields in order, each (name, value, line, column); repeated names repeat."""

    line: int = 1
    column: int = 1
    fields: list[tuple[str, Any, int, int]] = field(default_factory=list)

    def all(self, name: str) -> list[Any]:
        """Every value of `name`, in order (a repeated field)."""
        return [value for n, value, *_ in self.fields if n == name]

    def get(self, name: str, default: Any = None) -> Any:
        """The value of a singular field: its last one, as protobuf takes it; `default` if absent."""
        values = self.all(name)
        return values[-1] if values else default

    def has(self, name: str) -> bool:
        return any(n == name for n, *_ in self.fields)

    def where(self, name: str) -> tuple[int, int]:
        """Line and column of the last `name` field (of the message itself if absent)."""
        for n, _, line, column in reversed(self.fields):
            if n == name:
                return line, column
        return self.line, self.column

    def names(self) -> list[str]:
        return list(dict.fromkeys(n for n, *_ in self.fields))


_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[fF]?
                 |(?:inf|infinity|nan)\b))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[:{}<>\[\],;])
    """,
    re.VERBOSE | re.IGNORECASE,
)
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "?": "?",
}
_CLOSE = {"{": "}", "<": ">"}


@dataclass
class _Tok:
    kind: str
    text: str
    line: int
    column: int


def parse(text: str, source: str = "<text>") -> Message:
    """The top-level message of `text`; SpecFileError naming `source`, line and column if malformed."""
    return _Parser(text, source).message_body(None)


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.tokens = list(self._tokens(text))
        self.i = 0

    def fail(self, line: int, column: int, what: str) -> SpecFileError:
        return SpecFileError(f"{self.source}:{line}:{column}: {what}")

    def _tokens(self, text: str):
        line, start, pos = 1, 0, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            column = pos - start + 1
            if m is None and text[pos] in "\"'":
                raise self.fail(
                    line, column, f"a string opened here is not closed on its line; end it with {text[pos]}."
                )
            if m is None:
                raise self.fail(
                    line,
                    column,
                    f"unexpected character {text[pos]!r}; a prototxt holds "
                    "fields (name: value), messages (name { ... }) and # comments.",
                )
            kind = m.lastgroup
            if kind == "number" and m.end() < len(text) and re.match(r"[A-Za-z0-9_.]", text[m.end()]):
                word = re.match(r"[-+A-Za-z0-9_.]+", text[pos:]).group()
                raise self.fail(
                    line,
                    column,
                    f"{word!r} is not a number; write a whole number such as 96 "
                    "or a decimal such as 0.0001 (or 1e-4).",
                )
            if kind != "space":
                yield _Tok(kind, m.group(), line, column)
            newlines = m.group().count("\n")
            if newlines:
                line += newlines
                start = pos + m.group().rindex("\n") + 1
            pos = m.end()

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            last = self.tokens[-1] if self.tokens else _Tok("", "", 1, 1)
            raise self.fail(
                last.line,
                last.column + len(last.text),
                "the file ends in the middle of a field or message; a closing } may be missing.",
            )
        self.i += 1
        return tok

    def message_body(self, opened: _Tok | None) -> Message:
        msg = Message(opened.line if opened else 1, opened.column if opened else 1)
        close = _CLOSE[opened.text] if opened else None
        while True:
            tok = self.peek()
            if tok is None:
                if close is None:
                    return msg
                raise self.fail(
                    opened.line,
                    opened.column,
                    f"the message opened here with {opened.text!r} is never closed; add {close!r}.",
                )
            if close is not None and tok.text == close:
                self.i += 1
                return msg
            if tok.kind != "ident":
                raise self.fail(
                    tok.line,
                    tok.column,
                    f"expected a field name, found {tok.text!r}"
                    + (" (an extra closing brace?)" if tok.text in "}>" else "")
                    + ".",
                )
            self.i += 1
            self.field(tok, msg)
            nxt = self.peek()
            if nxt is not None and nxt.text in ",;":
                self.i += 1

    def field(self, name: _Tok, msg: Message) -> None:
        tok = self.take()
        colon = tok.text == ":"
        if colon:
            tok = self.take()
        if tok.text in _CLOSE:
            msg.fields.append((name.text, self.message_body(tok), name.line, name.column))
            return
        if not colon:
            raise self.fail(
                tok.line,
                tok.column,
                f"expected ':' or '{{' after the field name {name.text!r}, found {tok.text!r}.",
            )
        if tok.text == "[":
            values: list[Any] = []
            while True:
                item = self.take()
                if item.text == "]" and not values:
                    break
                if item.text in _CLOSE:
                    values.append(self.message_body(item))
                else:
                    values.append(self.scalar(name, item))
                end = self.take()
                if end.text == "]":
                    break
                if end.text != ",":
                    raise self.fail(
                        end.line,
                        end.column,
                        f"expected ',' or ']' in the list of {name.text!r}, found {end.text!r}.",
                    )
            msg.fields.extend((name.text, v, name.line, name.column) for v in values)
            return
        msg.fields.append((name.text, self.scalar(name, tok), name.line, name.column))

    def scalar(self, name: _Tok, tok: _Tok) -> Any:
        if tok.kind == "string":
            text = _unquote(tok.text)
            while (nxt := self.peek()) is not None and nxt.kind == "string":
                self.i += 1
                text += _unquote(nxt.text)
            return text
        if tok.kind == "ident":
            return Ident(tok.text)
        if tok.kind == "number":
            return _number(tok.text)
        raise self.fail(
            tok.line, tok.column, f"the field {name.text!r} has no value: found {tok.text!r} after its ':'."
        )


def _unquote(quoted: str) -> str:
    body = quoted[1:-1]
    return re.sub(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", _escape, body)


def _escape(m: re.Match) -> str:
    code = m.group(1)
    if code[0] in "xX":
        return chr(int(code[1:], 16))
    if code[0].isdigit():
        return chr(int(code, 8))
    return _ESCAPES.get(code, code)


def _number(text: str) -> int | float:
    t = text.lower()
    sign = -1 if t.startswith("-") else 1
    body = t.lstrip("+-")
    if body in ("inf", "infinity"):
        return sign * float("inf")
    if body == "nan":
        return float("nan")
    if body.startswith("0x"):
        return sign * int(body, 16)
    if re.fullmatch(r"0[0-7]+", body):
        return sign * int(body, 8)
    if re.fullmatch(r"[0-9]+", body):
        return sign * int(body)
    return sign * float(body.rstrip("f"))
