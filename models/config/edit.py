"""EasyRec's `--edit_config_json`: edit a parsed config from the command line.

EasyRec users tune a config without copying it: `--edit_config_json='{"train_config.
num_steps": 200}'` (easy_rec/python/utils/config_util.py `edit_config`). The same
edits apply here, with the same grammar, so a command line written for EasyRec
works unchanged:

- Each key is a dotted path from the top of the config; its value is `str(value)`.
  Keys and values are split on `;` and paired in order, so
  `{"data_config.batch_size;train_config.num_steps": "1024;200"}` sets two fields.
- A path token `name[...]` selects elements of the repeated field `name`: `[i]`
  (negative counts from the end), `[a:b]`, `[:b]`, `[a:]` (Python slices), `[:]`
  (all), or `[k OP v]`, every element whose `k` compares true with `v`. OP is the
  first of `>=`, `<=`, `>`, `<`, `=` found in the brackets (at its rightmost place);
  `k` is itself a path on each element (`features[input_names[0]=price]`); `v` is
  converted to k's type, so `>=` on a string field compares strings.
- Each field the path ends at is set: a scalar from the value's text (bools only
  from True/true/False/false, ints only from integer text, enums by name or number);
  a repeated scalar field cleared and parsed from `name: <value>`, so a JSON list
  (`[64, 32]`) or its text fills it; a message (or a selected element) cleared and
  parsed from the value in text format, with one pair of outer braces dropped, so
  `"{}"` clears it.
- Reading through an unset message doesn't set it; setting a field inside one does,
  and inside one member of a oneof switches the oneof, as in EasyRec.

Departures, each where EasyRec fails obscurely or silently (a ConfigError
`--edit-config-json: <key>: ...` instead, and the config is left unedited):
an unknown field (the error lists the message's fields); a condition or slice that
selects nothing (EasyRec: no-op); an index out of range; a range as the path's
last token (EasyRec clears the message holding the field instead); a value that
doesn't convert, or a repeated field's value that would set other fields too; a
nested JSON object as a value (use dotted keys); a key with more or fewer `;`
parts than its value (EasyRec drops the extra ones); a key given twice in the
JSON (json.loads keeps the last); a path through a repeated field without a
selector; a whole repeated message field as the target; a condition key that
isn't one scalar field. Supersets: enum names work for every enum field (EasyRec
finds only enums declared inside the field's message, so `loss_type:
"CLASSIFICATION"` fails there), dots inside brackets don't split the path
(EasyRec splits `[weight=1.0]` at its dot and then fails), and a `:` in a
condition's value doesn't make it a slice (EasyRec then fails on int()).
"""

import copy
import difflib
import json
import operator
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor

from models.config.errors import ConfigError

FLAG = "--edit-config-json"
EXAMPLE = '{"train_config.num_steps": 200}'

# EasyRec's order: the first operator found wins, so `>=` is never read as `=`.
_OPERATORS = ((">=", operator.ge), ("<=", operator.le), (">", operator.gt),
              ("<", operator.lt), ("=", operator.eq))
_INTS = (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64,
         FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64)
_FLOATS = (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE)
_TYPE_NAMES = {value: name[len("TYPE_"):].lower() for name, value in vars(FieldDescriptor).items()
               if name.startswith("TYPE_")}


class _Refusal(Exception):
  """Why one path can't be applied; apply_edits names the key in front."""


class _Target(NamedTuple):
  """One field a path ends at: `field` of `message`, or its element `index`."""
  message: object
  field: FieldDescriptor
  index: Optional[int]


def parse_edit_json(text: str) -> Dict[str, object]:
  """The flag's JSON object as a dict; ConfigError on bad JSON, a repeated key or a
  non-object."""
  try:
    edits = json.loads(text, object_pairs_hook=_without_repeats)
  except json.JSONDecodeError as e:
    raise ConfigError(f"{FLAG}: not valid JSON ({e}): {text!r}; expected an object such as "
                      f"'{EXAMPLE}'") from None
  except _Refusal as e:
    raise ConfigError(f"{FLAG}: {e}") from None
  if not isinstance(edits, dict):
    raise ConfigError(f"{FLAG}: expected a JSON object of paths to values such as "
                      f"'{EXAMPLE}', got {_JSON_KINDS.get(type(edits), 'a value')} {text!r}")
  return edits


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a bool", type(None): "null"}


def _without_repeats(pairs):
  # json.loads keeps the last of two equal keys; a repeated path is a typo, not an edit.
  keys = [key for key, _ in pairs]
  for key in keys:
    if keys.count(key) > 1:
      raise _Refusal(f"{key}: given twice")
  return dict(pairs)


def edit_pairs(edits: Mapping[str, object]) -> List[Tuple[str, str]]:
  """(path, value text) for each edit, in order, each `;`-separated key paired with
  the same place of its value, as EasyRec pairs them."""
  pairs = []
  for key, value in edits.items():
    nested = _nested_object(key, value)
    if nested:
      raise ConfigError(f"{FLAG}: {key}: a JSON object is not a value (EasyRec edits one "
                        f"field per key); use dotted keys, e.g. {nested}")
    keys = [k.strip() for k in str(key).split(";")]
    values = [v.strip() for v in str(value).split(";")]
    if len(keys) != len(values):
      raise ConfigError(f"{FLAG}: {key}: {len(keys)} ';'-separated paths but "
                        f"{_count(len(values), 'value')} in {str(value)!r}; they are paired "
                        "in order")
    pairs.extend(zip(keys, values))
  return pairs


def _nested_object(key, value) -> Optional[str]:
  """A dotted key for the first leaf of a JSON object in `value`, else None."""
  if isinstance(value, dict):
    if not value:
      return f'"{key}": "{{}}" to clear a message'
    inner, leaf = next(iter(value.items()))
    return _nested_object(f"{key}.{inner}", leaf) or f'"{key}.{inner}": {json.dumps(leaf)}'
  if isinstance(value, (list, tuple)) and any(_nested_object(key, v) for v in value):
    return f'"{key}[i].<field>": value for a field of one element'
  return None


def apply_edits(proto, edits: Mapping[str, object]) -> List[Tuple[str, int]]:
  """Applies EasyRec-style `edits` ({path: value}) to `proto` in order; returns
  (path, fields set) for each path. On a ConfigError, `proto` is left as it was."""
  work = copy.deepcopy(proto)
  applied = []
  for path, value in edit_pairs(edits):
    try:
      targets = _resolve(work, path)
      for target in targets:
        _assign(target, value)
    except _Refusal as e:
      raise ConfigError(f"{FLAG}: {path or repr(path)}: {e}") from None
    applied.append((path, len(targets)))
  proto.CopyFrom(work)
  return applied


# --- paths -------------------------------------------------------------------

def _tokens(path: str) -> List[str]:
  """The path split at the dots outside brackets, empty tokens dropped."""
  tokens, depth, start = [], 0, 0
  for i, char in enumerate(path):
    if char == "[":
      depth += 1
    elif char == "]":
      depth -= 1
      if depth < 0:
        raise _Refusal(f"unbalanced ']' at character {i + 1}")
    elif char == "." and depth == 0:
      tokens.append(path[start:i])
      start = i + 1
  if depth:
    raise _Refusal("unbalanced '['")
  tokens = [t.strip() for t in tokens + [path[start:]] if t.strip()]
  if not tokens:
    raise _Refusal(f"an empty path; write a dotted path such as {EXAMPLE}")
  return tokens


def _split_token(token: str) -> Tuple[str, Optional[str]]:
  """`name[selector]` as (name, selector); a plain name as (name, None)."""
  if "[" not in token:
    return token, None
  name, selector = token.split("[", 1)
  if not selector.endswith("]"):
    raise _Refusal(f"'{token}': a selector ends the token, as in name[0].field")
  return name.strip(), selector[:-1]


def _resolve(root, path: str, root_name: str = "the config") -> List[_Target]:
  """Every field `path` ends at, starting from the message `root`."""
  tokens = _tokens(path)
  messages, walked = [root], []
  for position, token in enumerate(tokens):
    name, selector = _split_token(token)
    last = position == len(tokens) - 1
    if selector is not None and last and _slice(selector) is not None:
      raise _Refusal(f"'{token}': a range must be followed by a field (as the last token "
                     "EasyRec would clear the message holding it)")
    targets, compared = [], []
    for message in messages:
      field = _field(message, name, ".".join(walked) or root_name)
      if selector is None:
        targets.append(_Target(message, field, None))
      else:
        targets += _select(message, field, selector, token, compared)
    if not targets:
      count = sum(len(getattr(m, name)) for m in messages)
      if compared:
        shown = ", ".join(repr(v) for v in compared[:8]) + (", ..." if len(compared) > 8 else "")
        raise _Refusal(f"'{token}' matches none of the {_count(count, 'element')} (their "
                       f"{_condition(selector, token)[0].strip()}: {shown})")
      raise _Refusal(f"'{token}' selects none of the {_count(count, 'element')}")
    walked.append(token)
    if not last:
      messages = [_descend(target, token) for target in targets]
  return targets


def _field(message, name: str, where: str) -> FieldDescriptor:
  """The field `name` of `message` (found at `where`); refused with the message's
  fields when unknown."""
  descriptor = message.DESCRIPTOR
  field = descriptor.fields_by_name.get(name)
  if field is None:
    names = [f.name for f in descriptor.fields]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    hint = f"; did you mean '{close[0]}'?" if close else "."
    article = "an" if descriptor.name[0] in "AEIOU" else "a"
    raise _Refusal(f"unknown field '{name}' in {where} ({article} {descriptor.name}){hint} Its "
                   f"fields: {', '.join(names)}")
  return field


def _descend(target: _Target, token: str):
  """The message a target holds, for the path's next token; reading it doesn't set it."""
  field = target.field
  if field.cpp_type != FieldDescriptor.CPPTYPE_MESSAGE:
    raise _Refusal(f"'{token}' is a {_type_name(field)}, not a message: no field follows it")
  held = getattr(target.message, field.name)
  if target.index is not None:
    return held[target.index]
  if field.label == FieldDescriptor.LABEL_REPEATED:
    raise _Refusal(f"'{token}' is a repeated field: select elements with {token}[i], "
                   f"{token}[a:b], {token}[:] or {token}[key=value]")
  return held


def _slice(selector: str) -> Optional[Tuple[Optional[int], Optional[int]]]:
  """(start, stop) of a `a:b` selector (either may be missing), else None."""
  if ":" not in selector:
    return None
  ends = []
  for end in selector.split(":", 1):
    end = end.strip()
    try:
      ends.append(int(end) if end else None)
    except ValueError:
      return None
  return ends[0], ends[1]


def _select(message, field: FieldDescriptor, selector: str, token: str,
            compared: list) -> List[_Target]:
  """The elements of repeated `field` of `message` that `selector` picks; a condition
  adds the values it compared to `compared`."""
  if field.label != FieldDescriptor.LABEL_REPEATED:
    raise _Refusal(f"'{token}': {field.name} is not a repeated field, so it has no elements "
                   "to select")
  elements = getattr(message, field.name)
  count = len(elements)
  ends = _slice(selector)
  if ends is not None:
    return [_Target(message, field, i) for i in range(count)[slice(*ends)]]
  try:
    index = int(selector)
  except ValueError:
    pass
  else:
    if not -count <= index < count:
      raise _Refusal(f"'{token}': index {index} is out of range: {field.name} has "
                     f"{_count(count, 'element')}")
    return [_Target(message, field, index % count)]
  key, compare, wanted = _condition(selector, token)
  if field.cpp_type != FieldDescriptor.CPPTYPE_MESSAGE:
    raise _Refusal(f"'{token}': a condition compares a field of each element, and "
                   f"{field.name} holds {_type_name(field)} values")
  selected = []
  for i, element in enumerate(elements):
    try:
      value, converted = _condition_operands(element, key, wanted)
    except _Refusal as e:
      raise _Refusal(f"'{token}' on {field.name}[{i}]: {e}") from None
    compared.append(value)
    if compare(value, converted):
      selected.append(_Target(message, field, i))
  return selected


def _condition(selector: str, token: str):
  """(key path, comparison, value text) of a `k OP v` selector."""
  for symbol, compare in _OPERATORS:
    at = selector.rfind(symbol)
    if at != -1:
      key = selector[:at]
      if not key.strip():
        raise _Refusal(f"'{token}': the condition needs a field before '{symbol}'")
      return key, compare, selector[at + len(symbol):]
  raise _Refusal(f"'{token}': expected an index [i], a range [a:b] or [:], or a condition "
                 "[key=value] (or >=, <=, >, <)")


def _condition_operands(element, key: str, wanted: str):
  """The value of `key` on `element`, and `wanted` converted to its type."""
  targets = _resolve(element, key, root_name="the element")
  field, index = targets[0].field, targets[0].index
  what = None
  if len(targets) != 1:
    what = f"{len(targets)} fields"
  elif index is None and field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
    what = f"a message ({_type_name(field)})"
  elif index is None and field.label == FieldDescriptor.LABEL_REPEATED:
    what = f"a repeated field; pick one element, e.g. {key.strip()}[0]"
  if what:
    raise _Refusal(f"a condition compares one scalar field of each element, and its key "
                   f"'{key.strip()}' is {what}")
  return _read(targets[0]), _convert(field, wanted)


def _count(n: int, noun: str) -> str:
  return f"{n} {noun}{'' if n == 1 else 's'}"


def _read(target: _Target):
  value = getattr(target.message, target.field.name)
  return value if target.index is None else value[target.index]


# --- values ------------------------------------------------------------------

def _type_name(field: FieldDescriptor) -> str:
  if field.enum_type is not None:
    return f"{field.enum_type.name} enum"
  if field.message_type is not None:
    return field.message_type.name
  return _TYPE_NAMES.get(field.type, "scalar")


def _convert(field: FieldDescriptor, text: str):
  """`text` as a value of `field`'s type, converted as EasyRec converts it."""
  kind = field.cpp_type
  if kind == FieldDescriptor.CPPTYPE_BOOL:
    if text not in ("True", "true", "False", "false"):
      raise _Refusal(f"{text!r} is not a bool: use true or false (True/False)")
    return text in ("True", "true")
  if kind == FieldDescriptor.CPPTYPE_ENUM:
    enum = field.enum_type
    if text in enum.values_by_name:
      return enum.values_by_name[text].number
    try:
      number = int(text)
    except ValueError:
      number = None
    if number not in enum.values_by_number:
      raise _Refusal(f"{text!r} is not a {enum.name}: one of "
                     f"{', '.join(v.name for v in enum.values)}")
    return number
  try:
    if kind in _INTS:
      return int(text)
    if kind in _FLOATS:
      return float(text)
  except ValueError:
    raise _Refusal(f"{text!r} is not {'an integer' if kind in _INTS else 'a number'} "
                   f"({field.name} is a {_type_name(field)})") from None
  if field.type == FieldDescriptor.TYPE_BYTES:
    return text.encode("utf-8")
  return text


def _assign(target: _Target, text: str):
  """Sets the target from `text` as EasyRec does (module docstring)."""
  message, field, index = target
  repeated = field.label == FieldDescriptor.LABEL_REPEATED
  if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
    if repeated and index is None:
      raise _Refusal(f"{field.name} is a repeated message field: replace one element "
                     f"({field.name}[i] or {field.name}[key=value]) or set fields inside the "
                     f"elements ({field.name}[:].<field>)")
    _replace(_read(target), text)
  elif repeated and index is None:
    # EasyRec: ClearField, then Parse('name:value') into the message. Parsed apart
    # here, so that a value can't set the message's other fields ("64 use_bn: false").
    scratch = type(message)()
    _parse(f"{field.name}:{text}", scratch, f"a list of {_type_name(field)} such as [1, 2]")
    if any(f.name != field.name for f, _ in scratch.ListFields()):
      raise _Refusal(f"{text!r} sets more than {field.name}")
    message.ClearField(field.name)
    getattr(message, field.name).extend(getattr(scratch, field.name))
  else:
    value = _convert(field, text)
    try:
      if index is None:
        setattr(message, field.name, value)
      else:
        getattr(message, field.name)[index] = value
    except (ValueError, TypeError) as e:
      raise _Refusal(f"{text!r} doesn't fit {field.name}, a {_type_name(field)}: {e}") from None


def _replace(message, text: str):
  """Clears `message` and parses `text` (text format, outer braces optional) into it."""
  text = text.strip()
  if text.startswith("{") and text.endswith("}"):
    text = text[1:-1]
  message.Clear()
  _parse(text, message, f"a {message.DESCRIPTOR.name} in text format ({{field: value ...}})")


def _parse(text: str, message, expected: str):
  try:
    text_format.Parse(text, message)
  except text_format.ParseError as e:
    raise _Refusal(f"can't read {text!r} as {expected}: {e}") from None
