"""Jinja extension for this template: answer validation and contract rendering filters.

copier.yml validators call the ``*_error(s)`` filters, which return "" for a good answer and a
message naming the question (and, for contracts, the contract and the field) otherwise.
Template files use the rendering filters: published, consumed, py_type, contract_imports,
snake, kebab and class_name.
"""

from __future__ import annotations

import difflib
import keyword
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml
from jinja2 import Environment
from jinja2.ext import Extension

Contract = Mapping[str, Any]

SCALAR_TYPES: Mapping[str, str] = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "decimal": "Decimal",
    "uuid": "UUID",
    # Events are stamped in absolute time: naive datetimes are refused when the event is built.
    "datetime": "AwareDatetime",
    "date": "date",
}
TYPE_IMPORTS: Mapping[str, tuple[str, str]] = {
    "decimal": ("decimal", "Decimal"),
    "uuid": ("uuid", "UUID"),
    "datetime": ("pydantic", "AwareDatetime"),
    "date": ("datetime", "date"),
}
THIRD_PARTY = frozenset({"pydantic"})
KEY_TYPES = ("str", "int", "uuid")
ROLES = ("publish", "consume", "both")
CONTRACT_KEYS: Mapping[str, str] = {
    "name": "PascalCase, like 'OrderPlaced'",
    "version": "an integer >= 1",
    "topic": "the Kafka topic / arq queue name / RabbitMQ routing key",
    "key": "one of its fields, of type str, int or uuid",
    "role": "publish, consume or both",
    "fields": "a mapping of field name to type",
}
TYPES_HINT = "str, int, float, bool, decimal, uuid, datetime, date, or list[...] of those"

# The rendered code's line length (its pyproject.toml), and the longest answers that keep every
# generated line within it (and ruff format's layout unchanged).
LINE_LENGTH = 110
MAX_PROJECT_NAME_WIDTH = 60  # FastAPI(title=...) in main.py
MAX_DESCRIPTION_WIDTH = 100  # the package docstring in __init__.py
MAX_PACKAGE_NAME = 40  # `from <package>.<module> import ...` lines in the tests
MAX_CONTRACT_NAME = 32  # the handler registry line: `NameV1: handle_name_v1,`
MAX_VERSION = 9999
MAX_FIELD_NAME = 60
# E741: a field named l reads as 1 (O and I are uppercase, which field names cannot be).
AMBIGUOUS_NAMES = frozenset({"l"})

NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
IDENTIFIER_RE = re.compile(r"^[a-z][a-z0-9_]*$")
LIST_RE = re.compile(r"^list\[(\w+)\]$")

# Public attributes of pydantic.BaseModel (v2) that a field would shadow; model_* is refused apart.
BASEMODEL_ATTRIBUTES = frozenset(
    {
        "construct",
        "copy",
        "dict",
        "from_orm",
        "json",
        "parse_file",
        "parse_obj",
        "parse_raw",
        "schema",
        "schema_json",
        "update_forward_refs",
        "validate",
    }
)
# Type names the generated models import or use in annotations.
SHADOWED_TYPES = frozenset({"str", "int", "float", "bool", "list", "date", "datetime"})
# Imports of the rendered service (and its tests/migrations folders) a package must not shadow.
DEPENDENCIES = frozenset(
    {
        "aio_pika",
        "aiokafka",
        "alembic",
        "anyio",
        "arq",
        "asyncpg",
        "fastapi",
        "httpx",
        "hypothesis",
        "migrations",
        "mypy",
        "nats",
        "prometheus_client",
        "pydantic",
        "pydantic_settings",
        "pytest",
        "redis",
        "ruff",
        "sqlalchemy",
        "starlette",
        "structlog",
        "testcontainers",
        "tests",
        "trustme",
        "typing_extensions",
        "uvicorn",
    }
)


# Every top-level module installed into the rendered services' environments (every broker, with
# their dev tools): a package of the same name would shadow it, and `uv sync` or imports break.
# tests/test_render.py checks this list against a synced render.
INSTALLED_MODULES = frozenset(
    {
        "aiokafka",
        "aiormq",
        "alembic",
        "annotated_doc",
        "annotated_types",
        "anyio",
        "arq",
        "ast_serialize",
        "async_timeout",
        "asyncpg",
        "certifi",
        "cffi",
        "charset_normalizer",
        "click",
        "cryptography",
        "docker",
        "dotenv",
        "fastapi",
        "greenlet",
        "h11",
        "hiredis",
        "httpcore",
        "httpx",
        "hypothesis",
        "idna",
        "iniconfig",
        "jwt",
        "librt",
        "mako",
        "markupsafe",
        "multidict",
        "mypy",
        "mypy_extensions",
        "mypyc",
        "nats",
        "opentelemetry",
        "packaging",
        "pamqp",
        "pathspec",
        "pika",
        "pluggy",
        "prometheus_client",
        "propcache",
        "py",
        "pycparser",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "pygments",
        "pytest",
        "pytest_asyncio",
        "pytest_timeout",
        "redis",
        "requests",
        "ruff",
        "sortedcontainers",
        "sqlalchemy",
        "starlette",
        "structlog",
        "testcontainers",
        "typing_extensions",
        "typing_inspection",
        "urllib3",
        "uvicorn",
        "wrapt",
        "yarl",
    }
)


# Rendering filters


def snake(name: str) -> str:
    """Return ``name`` in snake_case: "OrderPlaced" -> "order_placed"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", spaced).strip("_").lower()


def kebab(name: str) -> str:
    """Return ``name`` in kebab-case: "OrderPlaced" -> "order-placed"."""
    return snake(name).replace("_", "-")


def class_name(contract: Contract) -> str:
    """Return the model class name of a contract: OrderPlaced v1 -> "OrderPlacedV1"."""
    return f"{contract['name']}V{contract['version']}"


def py_type(field_type: str) -> str:
    """Return the annotation of a field type: "uuid" -> "UUID", "list[uuid]" -> "list[UUID]"."""
    if match := LIST_RE.match(field_type):
        return f"list[{py_type(match.group(1))}]"
    if field_type not in SCALAR_TYPES:
        raise ValueError(
            f"unknown contract field type {field_type!r} (expected one of: {TYPES_HINT})"
        )
    return SCALAR_TYPES[field_type]


def published(contracts: object) -> list[Contract]:
    """Return the contracts this service publishes (role publish or both)."""
    return [c for c in _contract_list(contracts) if c.get("role") in ("publish", "both")]


def consumed(contracts: object) -> list[Contract]:
    """Return the contracts this service consumes (role consume or both)."""
    return [c for c in _contract_list(contracts) if c.get("role") in ("consume", "both")]


def contract_imports(contracts: object) -> list[str]:
    """Return the import block the generated models need, grouped and sorted as ruff's isort wants.

    Standard-library lines first (always ``typing.ClassVar``), then a blank line and
    third-party lines when there are any.
    """
    names: dict[str, set[str]] = {"typing": {"ClassVar"}}
    for contract in _contract_list(contracts):
        for field_type in contract["fields"].values():
            base = match.group(1) if (match := LIST_RE.match(field_type)) else field_type
            if base in TYPE_IMPORTS:
                module, name = TYPE_IMPORTS[base]
                names.setdefault(module, set()).add(name)
    lines = {
        module: f"from {module} import {', '.join(sorted(names[module]))}"
        for module in sorted(names)
    }
    stdlib = [line for module, line in lines.items() if module not in THIRD_PARTY]
    third_party = [line for module, line in lines.items() if module in THIRD_PARTY]
    return stdlib + (["", *third_party] if third_party else [])


def tuple_of(names: Iterable[object]) -> str:
    """Return a tuple literal of ``names`` as ruff formats it: "()", "(A,)", or one name a line."""
    items = [str(name) for name in names]
    if len(items) < 2:
        return f"({items[0]},)" if items else "()"
    return "(\n" + "".join(f"    {item},\n" for item in items) + ")"


def import_list(names: Iterable[object]) -> str:
    """Return the names part of a from-import as ruff sorts and formats it: "A", or one a line."""
    items = sorted((str(name) for name in names), key=_member_order)
    if len(items) < 2:
        return "".join(items)
    return "(\n" + "".join(f"    {item},\n" for item in items) + ")"


def _member_order(name: str) -> tuple[int, list[tuple[int, str]], str]:
    """Sort key of ruff's isort for imported names: CONSTANTS, then Classes, then the rest;
    within each, case-insensitively with numbers in natural order ("V2" before "V10")."""
    kind = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    return kind, _natural(name.lower()), name


def _natural(name: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (0, part) for part in re.split(r"(\d+)", name)]


def refuse(message: str) -> str:
    """Stop rendering with ``message`` unless it is empty: for answers no validator checked."""
    if message:
        raise ValueError(message)
    return ""


def str_assignment(value: object, *, indent: int, target: str) -> str:
    """Return the right-hand side ``"value"`` of ``target = "value"`` as ruff formats it.

    A string too long for the line goes in parentheses on a line of its own, where E501 lets a
    single long word be.
    """
    literal = f'"{value}"'
    if indent + len(target) + 3 + len(literal) <= LINE_LENGTH:
        return literal
    return f"(\n{' ' * (indent + 4)}{literal}\n{' ' * indent})"


def identifier(text: str) -> str:
    """Return ``text`` as a lowercase Python identifier: "Orders Service" -> "orders_service"."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    name = f"x_{name}" if name[:1].isdigit() else name
    return name[:MAX_PACKAGE_NAME].rstrip("_")


def _contract_list(contracts: object) -> list[Contract]:
    if isinstance(contracts, Mapping):
        return [contracts]
    if isinstance(contracts, list):
        return [c for c in contracts if isinstance(c, Mapping)]
    raise TypeError(f"contracts must be a list of contracts, got {type(contracts).__name__}")


# Scalar validation filters


def package_name_error(name: str) -> str:
    """Return why ``name`` cannot be the Python package name, or "" if it can."""
    if not IDENTIFIER_RE.match(name):
        hint = identifier(name) or "orders_service"
        return (
            f"package_name {name!r} must be lowercase letters, digits and underscores, "
            f"starting with a letter (like {hint!r})"
        )
    hint = f"choose another name, like '{name}_service'"
    if keyword.iskeyword(name):
        return f"package_name {name!r} is a Python keyword; {hint}"
    if len(name) > MAX_PACKAGE_NAME:
        return (
            f"package_name {name!r} is {len(name)} characters long; at most {MAX_PACKAGE_NAME}, "
            "so that the generated import lines fit the line length"
        )
    if name in DEPENDENCIES:
        return f"package_name {name!r} would shadow the dependency or folder {name!r}; {hint}"
    if name in INSTALLED_MODULES:
        return (
            f"package_name {name!r} would shadow the module {name!r} that the rendered service "
            f"or its tools install; {hint}"
        )
    if name in sys.stdlib_module_names:
        return f"package_name {name!r} would shadow the standard library module {name!r}; {hint}"
    return ""


def text_error(text: str, question: str, *, required: bool = True, max_width: int = 0) -> str:
    """Return why ``text`` is not a usable one-line answer to ``question``, or "".

    ``max_width`` bounds the width the text takes in a line of code (wide characters count two,
    as in ruff's line length).
    """
    if required and not text.strip():
        return f"{question} must not be empty"
    if "\n" in text or "\r" in text:
        return f"{question} must be a single line"
    if '"' in text or "\\" in text:
        return f"{question} must not contain double quotes or backslashes (it goes into strings)"
    # They break pyproject.toml and source files (TOML and Python refuse them in strings).
    if controls := [c for c in text if unicodedata.category(c) in CONTROL_CATEGORIES]:
        return f"{question} must not contain control characters (found {controls[0]!r})"
    if max_width and (width := text_width(text)) > max_width:
        return f"{question} is too long: {width} characters wide, at most {max_width}"
    return ""


CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def text_width(text: str) -> int:
    """The columns ``text`` takes in an editor, as ruff counts them for its line length."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def choice_error(value: object, question: str, choices: Iterable[str]) -> str:
    """Return why ``value`` is not one of ``choices`` (an empty answer included), or ""."""
    allowed = list(choices)
    if value in allowed:
        return ""
    return f"{question} must be one of: {', '.join(allowed)} (got {value!r})"


def min_error(
    value: object,
    question: str,
    minimum: float,
    *,
    exclusive: bool = False,
    minimum_name: str = "",
    maximum: float | None = None,
) -> str:
    """Return why ``value`` is below ``minimum`` (another answer if ``minimum_name``) or above
    ``maximum``, or ""."""
    operator = ">" if exclusive else ">="
    bound = f"{minimum_name} ({minimum})" if minimum_name else str(minimum)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{question} must be a number {operator} {bound} (got {value!r})"
    ok = value > minimum if exclusive else value >= minimum  # written so that NaN fails
    if not ok:
        if minimum_name:
            return f"{question} ({value}) must be {operator} {minimum_name} ({minimum})"
        return f"{question} must be {operator} {minimum} (got {value})"
    if maximum is not None and not value <= maximum:  # also catches inf: it has no Python literal
        return f"{question} must be <= {maximum} (got {value})"
    return ""


# Answers that copier would fail to parse before any validator sees them


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {line}); a key may appear once"
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def yaml_problem(text: str) -> str:
    """Return why ``text`` is not YAML that means one thing (a key twice, bad syntax), or ""."""
    try:
        yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as error:
        where = f" (line {error.problem_mark.line + 1})" if error.problem_mark else ""
        return f"{error.problem}{where}"
    except yaml.YAMLError as error:
        return str(error)
    return ""


NUMBER_TYPES: Mapping[str, Callable[[str], object]] = {"int": int, "float": float}


def answer_type(raw: object, type_name: str) -> str:
    """Return the copier ``type`` to parse a question's ``--data`` answer ``raw`` with.

    Copier parses an answer before its validator runs and reports a parse failure without naming
    the question. For an answer that would not parse this returns "str", so that the validator
    gets the text and names the question and the problem; otherwise ``type_name``.
    """
    if not isinstance(raw, str):
        return type_name
    if type_name == "yaml":
        return "str" if yaml_problem(raw) else type_name
    if type_name in NUMBER_TYPES:
        try:
            NUMBER_TYPES[type_name](raw)
        except ValueError:
            return "str"
    return type_name


# Contract validation


def contract_errors(contracts: object, broker: str = "arq", service: str = "") -> str:
    """Return every problem in the ``contracts`` answer, one per line, or "" when it is valid.

    Each line names the contract (``contract 'OrderPlaced' v1``, or ``contract #2 ...`` while its
    name or version is unusable) and the key or field at fault. With Kafka, a contract topic may
    not be the service's own retry topic (``<service>.retry``, the worker reads it for retries);
    with RabbitMQ, its queue names must fit; with NATS, it must be a subject and own its stream.
    """
    if isinstance(contracts, str) and (problem := yaml_problem(contracts)):
        return f"contracts is not valid YAML: {problem}"
    if not isinstance(contracts, list):
        return f"contracts must be a YAML list of contracts, got {_kind(contracts)}"
    if not contracts:
        return "contracts must list at least one contract"
    problems: list[str] = []
    for number, contract in enumerate(contracts, start=1):
        if not isinstance(contract, Mapping):
            keys = ", ".join(CONTRACT_KEYS)
            problems.append(
                f"contract #{number}: must be a mapping with keys {keys}, got {_kind(contract)}"
            )
            continue
        label = _label(number, contract)
        problems.extend(f"{label}: {problem}" for problem in _problems(contract))
    problems.extend(_duplicate_problems(contracts))
    if broker == "kafka":
        problems.extend(_retry_topic_problems(contracts, service))
    if broker == "rabbitmq":
        problems.extend(_queue_name_problems(contracts, service))
    if broker == "nats":
        problems.extend(_subject_problems(contracts))
    if broker in COLLISION:
        problems.extend(_collision_problems(contracts, broker))
    return "\n".join(problems)


# RabbitMQ names a queue `<TOPIC_PREFIX><service>.<topic>` and its retry queues
# `<queue>.retry.<ms>ms`: all must fit in its 255-byte limit. Kept free for TOPIC_PREFIX:
RABBITMQ_NAME_MAX_BYTES = 255
RABBITMQ_PREFIX_ROOM = 32
RABBITMQ_RETRY_SUFFIX = ".retry.99999999ms"  # the longest delay a retry policy answer allows, in ms


def _queue_name_problems(contracts: list[object], service: str) -> list[str]:
    used = RABBITMQ_PREFIX_ROOM + len(f"{service}.{RABBITMQ_RETRY_SUFFIX}")
    room = RABBITMQ_NAME_MAX_BYTES - used
    return [
        f"{_label(number, contract)}: topic is {len(contract['topic'])} characters, but with "
        f"RabbitMQ the retry queue '{service}.<topic>{RABBITMQ_RETRY_SUFFIX}' must fit in "
        f"{RABBITMQ_NAME_MAX_BYTES} bytes with {RABBITMQ_PREFIX_ROOM} left for TOPIC_PREFIX: "
        f"at most {room} characters"
        for number, contract in enumerate(contracts, start=1)
        if isinstance(contract, Mapping)
        and isinstance(contract.get("topic"), str)
        and TOPIC_RE.match(contract["topic"])
        and len(contract["topic"]) > room
    ]


# NATS makes a topic the subject `<TOPIC_PREFIX><topic>`, whose '.'-separated tokens may not be
# empty, stored by a stream named after the subject with '.' as '_' (names may not hold '.').
# Kafka refuses a topic whose name differs from an existing one's only in '.' against '_'.
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
COLLISION = {
    "nats": "would share the NATS stream {name!r} (stream names hold '.' as '_')",
    "kafka": "collide in Kafka, which refuses topics differing only in '.' and '_' (as {name!r})",
}


def _topics(contracts: list[object]) -> list[tuple[str, str]]:
    return [
        (_label(number, contract), contract["topic"])
        for number, contract in enumerate(contracts, start=1)
        if isinstance(contract, Mapping)
        and isinstance(contract.get("topic"), str)
        and TOPIC_RE.match(contract["topic"])
    ]


def _subject_problems(contracts: list[object]) -> list[str]:
    return [
        f"{label}: topic {topic!r} is not a valid NATS subject: it may not start or end with "
        "'.' or hold '..'"
        for label, topic in _topics(contracts)
        if "" in topic.split(".")
    ]


def _collision_problems(contracts: list[object], broker: str) -> list[str]:
    names: dict[str, set[str]] = {}
    for _, topic in _topics(contracts):
        names.setdefault(NAME_UNSAFE.sub("_", topic), set()).add(topic)
    return [
        f"topics {', '.join(map(repr, sorted(clash)))} {COLLISION[broker].format(name=name)}: "
        "spell them alike"
        for name, clash in names.items()
        if len(clash) > 1
    ]


def _retry_topic_problems(contracts: list[object], service: str) -> list[str]:
    retry_topic = f"{service}.retry"
    return [
        f"{_label(number, contract)}: topic {retry_topic!r} is this service's own Kafka "
        "retry topic; choose another topic"
        for number, contract in enumerate(contracts, start=1)
        if isinstance(contract, Mapping) and contract.get("topic") == retry_topic
    ]


def _label(number: int, contract: Contract) -> str:
    name, version = contract.get("name"), contract.get("version")
    if not isinstance(name, str):
        return f"contract #{number}"
    if NAME_RE.match(name) and _version_problem(version) == "":
        return f"contract {name!r} v{version}"
    return f"contract #{number} {name!r}"


def _problems(contract: Contract) -> Iterable[str]:
    yield from _key_set_problems(contract)
    checks: list[tuple[str, Callable[[Any], str]]] = [
        ("name", _name_problem),
        ("version", _version_problem),
        ("topic", _topic_problem),
        ("role", _role_problem),
    ]
    for key, check in checks:
        if key in contract and (problem := check(contract[key])):
            yield problem
    fields = contract.get("fields")
    if "fields" in contract:
        yield from _fields_problems(fields)
    if "key" in contract and isinstance(fields, Mapping):
        yield from _key_problems(contract["key"], fields)


def _key_set_problems(contract: Contract) -> Iterable[str]:
    for key in contract:
        if key not in CONTRACT_KEYS:
            close = difflib.get_close_matches(str(key), CONTRACT_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            yield f"unknown key {key!r}{hint}; a contract has only {', '.join(CONTRACT_KEYS)}"
    for key, meaning in CONTRACT_KEYS.items():
        if key not in contract:
            yield f"missing {key!r} ({meaning})"


def _name_problem(name: object) -> str:
    if isinstance(name, str) and NAME_RE.match(name):
        if len(name) > MAX_CONTRACT_NAME:
            return f"name {name!r} is {len(name)} characters long; at most {MAX_CONTRACT_NAME}"
        return ""
    suggestion = "".join(
        part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", str(name))
    )
    if not NAME_RE.match(suggestion):
        suggestion = "OrderPlaced"
    return f"name must be PascalCase like {suggestion!r} (got {name!r})"


def _version_problem(version: object) -> str:
    if isinstance(version, bool):
        return f"version must be an integer >= 1, got the boolean {version!r}"
    if not isinstance(version, int) or version < 1:
        return f"version must be an integer >= 1, got {version!r}"
    if version > MAX_VERSION:
        return f"version must be at most {MAX_VERSION}, got {version!r}"
    return ""


def _topic_problem(topic: object) -> str:
    if isinstance(topic, str) and TOPIC_RE.match(topic) and topic not in (".", ".."):
        return ""
    return (
        f"topic {topic!r} is not a valid topic/queue name (1-200 characters from A-Z a-z 0-9 . _ -)"
    )


def _role_problem(role: object) -> str:
    if role in ROLES:
        return ""
    return f"role {role!r} must be one of: {', '.join(ROLES)}"


def _fields_problems(fields: object) -> Iterable[str]:
    if not isinstance(fields, Mapping) or not fields:
        yield f"fields must be a non-empty mapping of field name to type, got {_kind(fields)}"
        return
    for name, field_type in fields.items():
        if problem := _field_name_problem(name):
            yield problem
        if problem := _field_type_problem(field_type):
            yield f"field {name!r} {problem}"


def _field_name_problem(name: object) -> str:
    if isinstance(name, bool):
        return f"field {name!r}: YAML read this name as a boolean; quote it, like 'on': str"
    if not isinstance(name, str) or not IDENTIFIER_RE.match(name):
        return (
            f"field {name!r}: name must be lowercase letters, digits and _, starting with a letter"
        )
    if len(name) > MAX_FIELD_NAME:
        return f"field {name!r}: name is {len(name)} characters long; at most {MAX_FIELD_NAME}"
    if keyword.iskeyword(name):
        return f"field {name!r}: name is a Python keyword"
    if name in AMBIGUOUS_NAMES:
        return f"field {name!r}: name reads like the digit 1; use a longer name"
    if name.startswith("model_") or name in BASEMODEL_ATTRIBUTES:
        taken = ", ".join(sorted(BASEMODEL_ATTRIBUTES))
        return f"field {name!r}: name clashes with pydantic.BaseModel (no 'model_' prefix, {taken})"
    if name in SHADOWED_TYPES:
        return (
            f"field {name!r}: name shadows the type {name!r} in the model; use e.g. '{name}_value'"
        )
    return ""


def _field_type_problem(field_type: object) -> str:
    if isinstance(field_type, str):
        match = LIST_RE.match(field_type)
        if (match.group(1) if match else field_type) in SCALAR_TYPES:
            return ""
        if field_type.lower() in SCALAR_TYPES:
            return f"has unknown type {field_type!r} (did you mean {field_type.lower()!r}?)"
    return f"has unknown type {field_type!r} (expected one of: {TYPES_HINT})"


def _key_problems(key: object, fields: Mapping[str, Any]) -> Iterable[str]:
    if not isinstance(key, str) or key not in fields:
        yield f"key {key!r} is not one of its fields ({', '.join(map(str, fields))})"
        return
    key_type = fields[key]
    # An unknown type is reported on the field already.
    if key_type not in KEY_TYPES and not _field_type_problem(key_type):
        yield f"key {key!r} has type {key_type!r}; a key must be of type {', '.join(KEY_TYPES)}"


def _duplicate_problems(contracts: list[Any]) -> Iterable[str]:
    seen: dict[tuple[str, int], list[int]] = {}
    snakes: dict[str, set[str]] = {}
    for number, contract in enumerate(contracts, start=1):
        if not isinstance(contract, Mapping):
            continue
        name, version = contract.get("name"), contract.get("version")
        if isinstance(name, str) and NAME_RE.match(name):
            snakes.setdefault(snake(name), set()).add(name)
            if isinstance(version, int) and _version_problem(version) == "":
                seen.setdefault((name, version), []).append(number)
    for (name, version), numbers in seen.items():
        if len(numbers) > 1:
            times = "twice" if len(numbers) == 2 else f"{len(numbers)} times"
            places = ", ".join(f"#{n}" for n in numbers[:-1]) + f" and #{numbers[-1]}"
            yield f"contracts {name!r} v{version} appear {times} ({places})"
    for snake_name, names in snakes.items():
        if len(names) > 1:
            listed = " and ".join(repr(n) for n in sorted(names))
            yield f"contracts {listed} have the same snake_case name {snake_name!r}; rename one"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list | Mapping) and not value:
        return f"an empty {type(value).__name__}"
    return f"{type(value).__name__} {value!r}"


FILTERS: Mapping[str, Callable[..., Any]] = {
    "contract_errors": contract_errors,
    "choice_error": choice_error,
    "str_assignment": str_assignment,
    "refuse": refuse,
    "answer_type": answer_type,
    "package_name_error": package_name_error,
    "text_error": text_error,
    "min_error": min_error,
    "published": published,
    "consumed": consumed,
    "py_type": py_type,
    "contract_imports": contract_imports,
    "snake": snake,
    "kebab": kebab,
    "class_name": class_name,
    "tuple_of": tuple_of,
    "import_list": import_list,
    "identifier": identifier,
}


class ContractsExtension(Extension):
    """Registers this template's validation and contract filters on copier's Jinja environment."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(FILTERS)
