"""Bad input is refused with file, line and field named; good rows are typed by declaration."""

import io

import pytest

from components.csv_example_gen.csv_parser import BadInputError, read_examples
from models.config import load_config
from models.features import Column, ColumnType
from pipeline import configs

CONFIG = load_config(configs.CONFIG_PATH)
NAMES = [c.name for c in CONFIG.columns]
HEADER = ",".join(NAMES)
GOOD = "1,0,430548_1007,100001,1001,300001,500001,700001,1000001,5,2,1,3,,2,0,3,1001|1002,,19"


def _parse(*lines, path="day1.csv"):
  return list(read_examples(path, io.BytesIO(("\n".join(lines) + "\n").encode()),
                            CONFIG.columns, CONFIG.labels))


def _replace(line, column, value):
  cells = line.split(",")
  cells[NAMES.index(column)] = value
  return ",".join(cells)


def test_good_row_is_typed_by_declaration():
  (example,) = _parse(HEADER, GOOD)
  feature = example.features.feature
  assert feature["user_id"].bytes_list.value == [b"1000001"]  # digits, still a string id
  assert feature["price"].int64_list.value == [19]
  assert feature["clk"].int64_list.value == [1]
  assert feature["tag_category_list"].bytes_list.value == [b"1001|1002"]
  assert "pvalue_level" not in feature and "tag_brand_list" not in feature  # empty = missing


def test_header_may_list_columns_in_any_order():
  names = NAMES
  cells = GOOD.split(",")
  order = list(reversed(range(len(names))))
  (example,) = _parse(",".join(names[i] for i in order), ",".join(cells[i] for i in order))
  assert example.features.feature["user_id"].bytes_list.value == [b"1000001"]


def test_malformed_row_names_file_and_line():
  with pytest.raises(BadInputError, match=r"day1\.csv, line 3: 19 fields where the header has 20"):
    _parse(HEADER, GOOD, GOOD.rsplit(",", 1)[0])


def test_missing_column_names_the_column():
  names = [n for n in NAMES if n != "price"]
  with pytest.raises(BadInputError, match=r"day1\.csv, line 1 \(header\): missing column\(s\) \['price'\]"):
    _parse(",".join(names), GOOD.rsplit(",", 1)[0])


def test_non_numeric_price_names_field():
  with pytest.raises(BadInputError, match=r"day1\.csv, line 2, field 'price': 'cheap' is not an integer"):
    _parse(HEADER, _replace(GOOD, "price", "cheap"))


@pytest.mark.parametrize("value", ["nan", "12.5", "inf"])
def test_price_level_must_be_an_integer(value):
  with pytest.raises(BadInputError, match="field 'price'"):
    _parse(HEADER, _replace(GOOD, "price", value))


@pytest.mark.parametrize("value, ok", [("19.9", True), ("nan", False), ("-3", False),
                                       ("inf", False)])
def test_float_columns_take_finite_non_negative_numbers(value, ok):
  columns = [Column(c.name, ColumnType.FLOAT) if c.name == "price" else c
             for c in CONFIG.columns]
  text = io.BytesIO((HEADER + "\n" + _replace(GOOD, "price", value) + "\n").encode())
  if ok:
    (example,) = read_examples("day1.csv", text, columns, CONFIG.labels)
    assert example.features.feature["price"].float_list.value[0] == pytest.approx(19.9)
  else:
    with pytest.raises(BadInputError, match="field 'price'"):
      list(read_examples("day1.csv", text, columns, CONFIG.labels))


def test_buy_without_click_names_field():
  row = _replace(_replace(GOOD, "clk", "0"), "buy", "1")
  with pytest.raises(BadInputError, match=r"line 3, field 'buy': buy=1 but clk=0"):
    _parse(HEADER, GOOD, row)


@pytest.mark.parametrize("value", ["", "2", "yes"])
def test_label_must_be_zero_or_one(value):
  with pytest.raises(BadInputError, match="field 'clk': label must be 0 or 1"):
    _parse(HEADER, _replace(GOOD, "clk", value))


def test_unbalanced_quote_is_a_clear_error():
  with pytest.raises(BadInputError, match=r"day1\.csv"):
    _parse(HEADER, GOOD.replace("430548_1007", '"430548_1007'))


def test_empty_file():
  with pytest.raises(BadInputError, match="the file is empty"):
    list(read_examples("empty.csv", io.BytesIO(b""), CONFIG.columns, CONFIG.labels))


def test_bytes_that_are_not_utf8_name_their_line():
  raw = io.BytesIO(f"{HEADER}\n{GOOD}\n".encode() + GOOD.encode().replace(b"430548", b"\xe9"))
  examples = read_examples("day1.csv", raw, CONFIG.columns, CONFIG.labels)
  assert next(examples).features.feature["clk"].int64_list.value == [1]
  with pytest.raises(BadInputError, match=r"Bad input in day1.csv, line 3: not UTF-8 text"):
    next(examples)


def test_a_byte_order_mark_before_the_header_is_read_as_nothing():
  (example,) = _parse("\ufeff" + HEADER, GOOD)
  assert example.features.feature["clk"].int64_list.value == [1]


@pytest.mark.parametrize("value", ["1_9", "\u0661\u0669", "19.0", "9223372036854775808"])
def test_integers_are_ascii_digits_within_int64(value):
  with pytest.raises(BadInputError, match=r"line 2, field 'price'"):
    _parse(HEADER, _replace(GOOD, "price", value))


def test_a_refused_row_is_quoted_with_its_byte_offset():
  bad = _replace(GOOD, "price", "cheap")
  offset = len(f"{HEADER}\n{GOOD}\n".encode())
  with pytest.raises(BadInputError) as refused:
    _parse(HEADER, GOOD, bad)
  assert str(refused.value) == (f"Bad input in day1.csv, line 3, field 'price': 'cheap' is "
                                f"not an integer (ASCII digits); the row at byte {offset}: {bad!r}")


def test_a_long_refused_row_is_quoted_in_part():
  bad = _replace(GOOD, "tag_category_list", "|".join(["1001"] * 200)) + ",extra"
  with pytest.raises(BadInputError, match=r"21 fields where .*; the row at byte \d+: "
                                          r"'1,0,430548_1007,[0-9,|]{250,}\.\.\.'$"):
    _parse(HEADER, bad)


def test_quoted_commas_are_read_within_one_line():
  row = _replace(GOOD, "tag_category_list", '"1001,1002"')
  (example,) = _parse(HEADER, row)
  assert example.features.feature["tag_category_list"].bytes_list.value == [b"1001,1002"]


def test_a_line_break_inside_a_quoted_field_is_refused_naming_its_line_and_byte():
  row = _replace(GOOD, "tag_category_list", '"1001\n1002"')
  offset = len(f"{HEADER}\n{GOOD}\n{GOOD}\n".encode())
  with pytest.raises(BadInputError, match=(
      rf"day1\.csv, line 4: a quoted field is still open at the end of the line: a stray "
      rf"quote, or a line break inside a quoted field, .*; the row at byte {offset}: ")):
    _parse(HEADER, GOOD, GOOD, row, GOOD)


def test_blank_lines_and_crlf_line_ends_are_read_as_rows_are_written():
  text = f"{HEADER}\r\n{GOOD}\r\n\r\n\n{_replace(GOOD, 'price', '7')}".encode()
  examples = list(read_examples("day1.csv", io.BytesIO(text), CONFIG.columns, CONFIG.labels))
  assert [e.features.feature["price"].int64_list.value[0] for e in examples] == [19, 7]
