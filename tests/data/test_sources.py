"""Reading CSV and Excel files: encodings, delimiters, headers, rows, and refused files."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from pathlib import Path

import pytest
from openpyxl import Workbook
from openpyxl.styles import Font

from metacrm.runtime.data.sources import (
    MAX_CELL,
    MAX_COLUMNS,
    Cell,
    SourceProblem,
    count_rows,
    open_table,
)


def _read(path: Path, **options: str) -> tuple[list[str], str | None, list[tuple[int, list[Cell]]]]:
    with open_table(path, name=options.pop("name", path.name), **options) as table:
        return table.columns, table.encoding, list(table.rows())


def _problem(path: Path, **options: str) -> SourceProblem:
    with pytest.raises(SourceProblem) as caught:
        _read(path, **options)
    return caught.value


def test_utf8_csv_with_quotes_blank_lines_and_padding(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        'name,city, note \n"Acme, Inc",Paris,"two\nlines"\n\n,,\nBeta,Rome\n', encoding="utf-8"
    )
    columns, encoding, rows = _read(path)
    assert columns == ["name", "city", "note"]
    assert encoding == "utf-8"
    # Row numbers as a spreadsheet shows them: blank rows count, but are not yielded.
    assert rows == [(2, ["Acme, Inc", "Paris", "two\nlines"]), (5, ["Beta", "Rome", None])]


def test_bom_gbk_semicolon_and_tab(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes("名称,行业\n华为,tech\n".encode("utf-8-sig"))
    assert _read(bom) == (["名称", "行业"], "utf-8-sig", [(2, ["华为", "tech"])])

    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("客户名称;行业;年营业额\n北京华为有限公司;科技;1.234,5\n".encode("gbk"))
    columns, encoding, rows = _read(gbk)
    assert (columns, encoding) == (["客户名称", "行业", "年营业额"], "gb18030")
    assert rows == [(2, ["北京华为有限公司", "科技", "1.234,5"])]

    tab = tmp_path / "tab.txt"
    tab.write_text("a\tb\tc\n1\t2,5\t3\n", encoding="utf-8")
    assert _read(tab)[2] == [(2, ["1", "2,5", "3"])]


def test_utf16_text_from_excel(tmp_path: Path) -> None:
    path = tmp_path / "unicode.txt"
    path.write_bytes("名称\t城市\r\n上海公司\t上海\r\n".encode("utf-16"))
    assert _read(path) == (["名称", "城市"], "utf-16", [(2, ["上海公司", "上海"])])


def test_line_breaks_old_mac_and_separators_inside_cells(tmp_path: Path) -> None:
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b'name,city\rAcme,Paris\r"a\rb",Rome\r')
    assert _read(mac)[2] == [(2, ["Acme", "Paris"]), (3, ["a\rb", "Rome"])]
    # Unicode line separators are data, in every encoding.
    text = 'name,city\r\nAcme,"Pa\x85ris\u2028x"\r\n"a\rb","R\r\nome"\r\n'
    for encoding in ("utf-8", "utf-16"):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(text.encode(encoding))
        assert _read(path)[2] == [
            (2, ["Acme", "Pa\x85ris\u2028x"]),
            (3, ["a\rb", "R\r\nome"]),
        ]


def test_utf16_line_break_across_blocks(tmp_path: Path) -> None:
    # The BOM and 32,767 characters fill the first 64 KiB block: its last one is a CR
    # whose LF starts the next block. One line break, so "y" stays on row 3.
    text = "name\r\n" + "x" * 32760 + "\r\ny\r\n"
    path = tmp_path / "wide.txt"
    path.write_bytes(text.encode("utf-16"))
    assert path.read_bytes()[65534:65538] == "\r\n".encode("utf-16-le")
    assert _read(path)[2] == [(2, ["x" * 32760]), (3, ["y"])]


def test_explicit_encoding_wins(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("name\nCafé\n".encode("latin-1"))
    # Not UTF-8, so taken for GB18030, where the byte of é starts a two-byte character.
    problem = _problem(path)
    assert (problem.code, problem.row) == ("encoding", 2)
    assert "gb18030" in problem.message
    assert _read(path, encoding="latin-1") == (["name"], "latin-1", [(2, ["Café"])])
    assert _problem(path, encoding="klingon").code == "encoding"


def test_invalid_byte_after_the_prefix_names_its_row(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    lines = [f"Company {i},{i}\n".encode() for i in range(2, 6000)]
    lines[5000 - 2] = b"Bad \xff company,5000\n"
    path.write_bytes("名称,n\n".encode() + b"".join(lines))
    with open_table(path, name="big.csv") as table:
        assert table.encoding == "utf-8"
        seen = []
        with pytest.raises(SourceProblem) as caught:
            for number, _ in table.rows():
                seen.append(number)
    assert caught.value.code == "encoding"
    assert caught.value.row == 5000
    assert "row 5000" in caught.value.message
    assert seen == list(range(2, 5000))


def test_encoding_judged_on_the_first_non_ascii_bytes(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    ascii_rows = b"".join(f"Company {i},{i}\n".encode() for i in range(2, 6000))
    path.write_bytes(b"name,n\n" + ascii_rows + "深圳某某有限公司,6000\n".encode("gbk"))
    with open_table(path, name="late.csv") as table:
        assert table.encoding == "gb18030"
        rows = list(table.rows())
    assert len(rows) == 5999
    assert rows[-1] == (6000, ["深圳某某有限公司", "6000"])


def test_blank_and_duplicate_headers(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("\n\nname,,email,\nx,y,z\n", encoding="utf-8")
    columns, _, rows = _read(path)
    assert columns == ["name", "column 2", "email"]
    assert rows == [(4, ["x", "y", "z"])]

    twice = tmp_path / "twice.csv"
    twice.write_text("name, name ,email\n", encoding="utf-8")
    problem = _problem(twice)
    assert problem.code == "duplicate-column"
    assert "'name'" in problem.message


def test_empty_header_only_and_binary_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert _problem(empty).code == "empty"
    blank = tmp_path / "blank.csv"
    blank.write_text("\n , \n\n", encoding="utf-8")
    assert _problem(blank).code == "empty"

    header = tmp_path / "header.csv"
    header.write_text("name,email\n", encoding="utf-8")
    assert _read(header) == (["name", "email"], "utf-8", [])
    assert count_rows(header, name="header.csv") == 0

    binary = tmp_path / "data.csv"
    binary.write_bytes(b"name\x00\x01\x02\n")
    assert _problem(binary).code == "binary"


def test_extra_cells_and_limits(tmp_path: Path) -> None:
    extra = tmp_path / "extra.csv"
    extra.write_text("name,city\nAcme,Paris,,\nAcme, Inc,Paris\n", encoding="utf-8")
    with open_table(extra, name="extra.csv") as table:
        rows = table.rows()
        assert next(rows) == (2, ["Acme", "Paris"])  # trailing empty cells are dropped
        with pytest.raises(SourceProblem) as caught:
            next(rows)
    assert (caught.value.code, caught.value.row) == ("extra-cells", 3)

    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)) + "\n", encoding="utf-8")
    assert _problem(wide).code == "too-many-columns"

    long = tmp_path / "long.csv"
    long.write_text("note\n" + "x" * (MAX_CELL + 1) + "\n", encoding="utf-8")
    assert _problem(long).code == "cell-too-long"


def test_xlsx_values_dates_numbers_and_trailing_blanks(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["名称", "Signed", "Amount", "Share", "Count", None])
    sheet.append(["Acme", dt.date(2024, 3, 1), 1234.5, 0.155, 7])
    sheet.append([None, None, None, None, None])
    sheet.append(["Beta", dt.datetime(2024, 3, 2, 9, 30), -2, 1, True])
    sheet["D2"].number_format = "0.0%"
    sheet["D4"].number_format = "0%"
    # Styled but empty cells far right and below: Excel keeps them, the table must not.
    sheet["J1"].font = Font(bold=True)
    sheet["A20"].font = Font(bold=True)
    other = book.create_sheet("Other")
    other.append(["x"])
    other.append(["y"])
    path = tmp_path / "book.xlsx"
    book.save(path)

    columns, encoding, rows = _read(path)
    assert columns == ["名称", "Signed", "Amount", "Share", "Count"]
    assert encoding is None
    assert rows == [
        (2, ["Acme", dt.datetime(2024, 3, 1), 1234.5, "15.5%", 7]),
        (4, ["Beta", dt.datetime(2024, 3, 2, 9, 30), -2, "100%", True]),
    ]
    assert _read(path, sheet="Other")[2] == [(2, ["y"])]
    problem = _problem(path, sheet="Nope")
    assert problem.code == "unknown-sheet"
    assert "'Other'" in problem.message
    assert count_rows(path, name="book.xlsx") == 2

    # Recognised by its bytes, whatever its name says.
    renamed = tmp_path / "export.csv"
    renamed.write_bytes(path.read_bytes())
    with open_table(renamed, name="export.csv") as table:
        assert table.format == "xlsx"


def test_xls_and_broken_workbooks_are_refused(tmp_path: Path) -> None:
    ole = tmp_path / "old.bin"
    ole.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    problem = _problem(ole)
    assert problem.code == "xls"
    assert ".xlsx" in problem.message
    named = tmp_path / "old.xls"
    named.write_text("name\nx\n", encoding="utf-8")
    assert _problem(named).code == "xls"

    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04" + b"garbage" * 100)
    assert _problem(broken).code == "invalid-xlsx"
    text = tmp_path / "text.xlsx"
    text.write_text("name\nx\n", encoding="utf-8")
    assert _problem(text).code == "invalid-xlsx"


@pytest.mark.slow
def test_memory_stays_constant_for_a_big_csv(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    row = "深圳市某某科技有限公司,13800138000,some@example.com,1234.50\n".encode("gbk")
    with path.open("wb") as out:
        out.write("名称,电话,邮箱,金额\n".encode("gbk"))
        for _ in range(20):
            out.write(row * 1000)  # 20,000 rows, 1.2 MB: many times the reading buffers
    tracemalloc.start()
    try:
        assert count_rows(path, name="big.csv") == 20_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 600_000


def test_a_cell_the_export_guarded_reads_back_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "guarded.csv"
    path.write_text("name\n'=SUM(A1)\n''quoted\n'plain\n+86 138\n", encoding="utf-8")
    _, _, rows = _read(path)
    assert [cells[0] for _, cells in rows] == ["=SUM(A1)", "'quoted", "'plain", "+86 138"]
