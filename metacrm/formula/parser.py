"""Parse expression text with `ast` into a syntax tree, refusing hostile input early."""

from __future__ import annotations

import ast

from metacrm.errors import FormulaError
from metacrm.formula.types import MAX_DEPTH, MAX_LENGTH, MAX_NODES


class Source:
    """Expression text plus the field name errors are reported against."""

    def __init__(self, text: str, field: str = "expression") -> None:
        self.text = text
        self.field = field
        self._lines = text.split("\n")

    def position(self, node: ast.AST | None) -> tuple[int, int]:
        """1-based (line, column) in characters (ast counts UTF-8 bytes)."""
        line: int | None = getattr(node, "lineno", None)
        if line is None:
            return 1, 1
        start: int = getattr(node, "col_offset", 0)
        text = self._lines[line - 1] if 0 < line <= len(self._lines) else ""
        offset = start - 1 if line == 1 else start
        column = len(text.encode("utf-8")[: max(offset, 0)].decode("utf-8", "replace")) + 1
        return line, column

    def error(self, message: str, node: ast.AST | None = None) -> FormulaError:
        line, column = self.position(node)
        return FormulaError(message, line=line, column=column, field=self.field)

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment("(" + self.text + "\n)", node) or ""


def parse(source: Source) -> ast.expr:
    """The syntax tree of one expression; FormulaError when it is too long, deep or invalid."""
    text = source.text
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the expression is empty", field=source.field)
    if len(text) > MAX_LENGTH:
        raise FormulaError(
            f"the expression is longer than {MAX_LENGTH} characters", field=source.field
        )
    if "\x00" in text:
        raise FormulaError("the expression contains a NUL character", field=source.field)
    _check_bracket_depth(source)
    try:
        # Wrapped in brackets so an expression may span lines; columns of line 1 shift by one.
        tree = ast.parse("(" + text + "\n)", mode="eval")
    except SyntaxError as exc:
        line, column = exc.lineno or 1, exc.offset or 1
        column = max(1, column - 1) if line == 1 else column
        lines = text.split("\n")
        if line > len(lines):  # at the end of the text (past our closing bracket's line)
            line, column = len(lines), len(lines[-1]) + 1
        raise FormulaError(
            f"syntax error: {exc.msg}", line=line, column=column, field=source.field
        ) from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError("the expression is nested too deeply", field=source.field) from None
    _check_shape(source, tree.body)
    return tree.body


def _check_bracket_depth(source: Source) -> None:
    """Refuse deep bracket nesting before the Python parser sees it (ignores text in quotes)."""
    depth, quote, escaped = 0, "", False
    line, column = 1, 0
    for char in source.text:
        column += 1
        if char == "\n":
            line, column = line + 1, 0
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise FormulaError(
                    f"the expression is nested more than {MAX_DEPTH} levels deep",
                    line=line,
                    column=column,
                    field=source.field,
                )
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                raise FormulaError(
                    f"unmatched {char!r}", line=line, column=column, field=source.field
                )


def _check_shape(source: Source, root: ast.expr) -> None:
    """Depth and size limits, walked without recursion."""
    stack: list[tuple[ast.AST, int]] = [(root, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise source.error(f"the expression is nested more than {MAX_DEPTH} levels deep", node)
        if count > MAX_NODES:
            raise source.error(f"the expression has more than {MAX_NODES} parts", node)
        for child in ast.iter_child_nodes(node):
            stack.append((child, depth + 1))
