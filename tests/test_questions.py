"""Question tests: every copier.yml validator accepts good answers and refuses bad ones by name."""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2
import pytest
import yaml
from copier import run_copy

ROOT = Path(__file__).resolve().parent.parent
COPIER_YML = yaml.safe_load((ROOT / "copier.yml").read_text())
TYPES_HINT = "str, int, float, bool, decimal, uuid, datetime, date, or list[...] of those"


def _load_extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "template_contracts", ROOT / "extensions" / "contracts.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ext = _load_extension()


def order_placed() -> dict[str, Any]:
    return {
        "name": "OrderPlaced",
        "version": 1,
        "topic": "orders",
        "key": "order_id",
        "role": "both",
        "fields": {
            "order_id": "uuid",
            "customer_id": "str",
            "total": "decimal",
            "placed_at": "datetime",
            "tags": "list[str]",
        },
    }


def changed(**changes: Any) -> dict[str, Any]:
    contract = order_placed()
    contract.update(changes)
    return contract


def field_typed(name: object, field_type: object) -> dict[str, Any]:
    contract = order_placed()
    contract["fields"][name] = field_type
    return contract


def errors(contracts: object) -> list[str]:
    result: str = ext.contract_errors(contracts)
    return result.splitlines()


# Contracts: accepted


def test_default_contracts_are_valid() -> None:
    assert ext.contract_errors(COPIER_YML["contracts"]["default"]) == ""


def test_every_field_type_and_list_of_it_is_accepted() -> None:
    types = ["str", "int", "float", "bool", "decimal", "uuid", "datetime", "date"]
    fields = {"event_key": "str"} | {f"f_{t}": t for t in types}
    fields |= {f"many_{t}": f"list[{t}]" for t in types}
    assert errors([changed(key="event_key", fields=fields)]) == []


@pytest.mark.parametrize("key_type", ["str", "int", "uuid"])
def test_key_of_str_int_or_uuid_is_accepted(key_type: str) -> None:
    assert errors([field_typed("order_id", key_type)]) == []


@pytest.mark.parametrize("role", ["publish", "consume", "both"])
def test_every_role_is_accepted(role: str) -> None:
    assert errors([changed(role=role)]) == []


@pytest.mark.parametrize(
    "topic", ["orders", "billing.invoices", "shipping-events", "a_b", "x" * 200]
)
def test_topic_names_are_accepted(topic: str) -> None:
    assert errors([changed(topic=topic)]) == []


def test_same_name_with_another_version_is_accepted() -> None:
    assert errors([order_placed(), changed(version=2)]) == []


# Contracts: refused, each message naming the contract and the key or field at fault

BAD_CONTRACTS: list[tuple[str, dict[str, Any], str]] = [
    (
        "key not a field",
        changed(key="order_idd"),
        "contract 'OrderPlaced' v1: key 'order_idd' is not one of its fields "
        "(order_id, customer_id, total, placed_at, tags)",
    ),
    (
        "key of a list type",
        changed(key="tags"),
        "contract 'OrderPlaced' v1: key 'tags' has type 'list[str]'; "
        "a key must be of type str, int, uuid",
    ),
    (
        "key of float type",
        field_typed("order_id", "float"),
        "contract 'OrderPlaced' v1: key 'order_id' has type 'float'",
    ),
    (
        "key of bool type",
        field_typed("order_id", "bool"),
        "contract 'OrderPlaced' v1: key 'order_id' has type 'bool'",
    ),
    (
        "key not a string",
        changed(key=["order_id"]),
        "contract 'OrderPlaced' v1: key ['order_id'] is not one of its fields",
    ),
    (
        "camelCase name",
        changed(name="orderPlaced"),
        "contract #1 'orderPlaced': name must be PascalCase like 'OrderPlaced'",
    ),
    (
        "snake_case name",
        changed(name="order_placed"),
        "contract #1 'order_placed': name must be PascalCase like 'OrderPlaced'",
    ),
    (
        "unknown field type",
        field_typed("total", "money"),
        f"contract 'OrderPlaced' v1: field 'total' has unknown type 'money' "
        f"(expected one of: {TYPES_HINT})",
    ),
    (
        "capitalised field type",
        field_typed("total", "Decimal"),
        "contract 'OrderPlaced' v1: field 'total' has unknown type 'Decimal' "
        "(did you mean 'decimal'?)",
    ),
    (
        "nested list type",
        field_typed("tags", "list[list[str]]"),
        "contract 'OrderPlaced' v1: field 'tags' has unknown type 'list[list[str]]'",
    ),
    (
        "list of unknown type",
        field_typed("tags", "list[money]"),
        "contract 'OrderPlaced' v1: field 'tags' has unknown type 'list[money]'",
    ),
    (
        "field without type",
        field_typed("tags", None),
        "contract 'OrderPlaced' v1: field 'tags' has unknown type None",
    ),
    (
        "version 0",
        changed(version=0),
        "contract #1 'OrderPlaced': version must be an integer >= 1, got 0",
    ),
    (
        "bool version",
        changed(version=True),
        "contract #1 'OrderPlaced': version must be an integer >= 1, got the boolean True",
    ),
    (
        "string version",
        changed(version="1"),
        "contract #1 'OrderPlaced': version must be an integer >= 1, got '1'",
    ),
    (
        "float version",
        changed(version=1.5),
        "contract #1 'OrderPlaced': version must be an integer >= 1, got 1.5",
    ),
    (
        "unknown role",
        changed(role="producer"),
        "contract 'OrderPlaced' v1: role 'producer' must be one of: publish, consume, both",
    ),
    (
        "empty fields",
        changed(fields={}),
        "contract 'OrderPlaced' v1: fields must be a non-empty mapping of field name to type, "
        "got an empty dict",
    ),
    (
        "fields as a list",
        changed(fields=["order_id"]),
        "contract 'OrderPlaced' v1: fields must be a non-empty mapping of field name to type, "
        "got list ['order_id']",
    ),
    (
        "topic with a space",
        changed(topic="order events"),
        "contract 'OrderPlaced' v1: topic 'order events' is not a valid topic/queue name",
    ),
    ("empty topic", changed(topic=""), "contract 'OrderPlaced' v1: topic '' is not a valid"),
    ("topic '..'", changed(topic=".."), "contract 'OrderPlaced' v1: topic '..' is not a valid"),
    ("long topic", changed(topic="x" * 201), "contract 'OrderPlaced' v1: topic 'xxxx"),
    ("numeric topic", changed(topic=7), "contract 'OrderPlaced' v1: topic 7 is not a valid"),
    (
        "typo in a contract key",
        {**{k: v for k, v in order_placed().items() if k != "fields"}, "feilds": {"a": "str"}},
        "contract 'OrderPlaced' v1: unknown key 'feilds' (did you mean 'fields'?); "
        "a contract has only name, version, topic, key, role, fields",
    ),
    (
        "unrelated extra key",
        changed(owner="team-a"),
        "contract 'OrderPlaced' v1: unknown key 'owner'; a contract has only",
    ),
    (
        "uppercase field name",
        field_typed("OrderRef", "str"),
        "contract 'OrderPlaced' v1: field 'OrderRef': name must be lowercase letters, digits and _",
    ),
    (
        "field name starting with a digit",
        field_typed("2fa", "str"),
        "contract 'OrderPlaced' v1: field '2fa': name must be lowercase letters, digits and _",
    ),
    (
        "unquoted on as a field name",
        field_typed(True, "str"),  # what YAML makes of an unquoted `on:`
        "contract 'OrderPlaced' v1: field True: YAML read this name as a boolean; quote it",
    ),
    (
        "keyword field name",
        field_typed("class", "str"),
        "contract 'OrderPlaced' v1: field 'class': name is a Python keyword",
    ),
    (
        "model_ field name",
        field_typed("model_config", "str"),
        "contract 'OrderPlaced' v1: field 'model_config': name clashes with pydantic.BaseModel",
    ),
    (
        "BaseModel attribute field name",
        field_typed("json", "str"),
        "contract 'OrderPlaced' v1: field 'json': name clashes with pydantic.BaseModel",
    ),
    (
        "field name shadowing a type",
        field_typed("date", "date"),
        "contract 'OrderPlaced' v1: field 'date': name shadows the type 'date'",
    ),
]


@pytest.mark.parametrize(
    ("contract", "message"),
    [case[1:] for case in BAD_CONTRACTS],
    ids=[case[0] for case in BAD_CONTRACTS],
)
def test_bad_contract_is_refused_by_name(contract: dict[str, Any], message: str) -> None:
    assert any(line.startswith(message) for line in errors([contract])), errors([contract])


@pytest.mark.parametrize("missing", ["version", "topic", "key", "role", "fields"])
def test_missing_contract_key_is_named(missing: str) -> None:
    contract = {k: v for k, v in order_placed().items() if k != missing}
    label = "contract #1 'OrderPlaced'" if missing == "version" else "contract 'OrderPlaced' v1"
    assert any(line.startswith(f"{label}: missing '{missing}' (") for line in errors([contract]))


def test_contract_without_name_is_named_by_position() -> None:
    contract = {k: v for k, v in order_placed().items() if k != "name"}
    assert errors([order_placed() | {"version": 2}, contract]) == [
        "contract #2: missing 'name' (PascalCase, like 'OrderPlaced')"
    ]


def test_contract_that_is_not_a_mapping_is_named_by_position() -> None:
    assert errors([order_placed(), "OrderShipped"]) == [
        "contract #2: must be a mapping with keys name, version, topic, key, role, fields, "
        "got str 'OrderShipped'"
    ]


@pytest.mark.parametrize(
    ("contracts", "message"),
    [
        ([], "contracts must list at least one contract"),
        ({"name": "OrderPlaced"}, "contracts must be a YAML list of contracts, got dict"),
        ("OrderPlaced", "contracts must be a YAML list of contracts, got str 'OrderPlaced'"),
        (None, "contracts must be a YAML list of contracts, got null"),
    ],
)
def test_contracts_must_be_a_non_empty_list(contracts: object, message: str) -> None:
    assert errors(contracts)[0].startswith(message)


def test_duplicate_name_and_version_are_refused_with_positions() -> None:
    contracts = [order_placed(), changed(name="PaymentReceived"), order_placed()]
    assert errors(contracts) == ["contracts 'OrderPlaced' v1 appear twice (#1 and #3)"]


def test_triplicate_is_counted() -> None:
    assert errors([order_placed()] * 3) == [
        "contracts 'OrderPlaced' v1 appear 3 times (#1, #2 and #3)"
    ]


def test_names_with_the_same_snake_case_are_refused() -> None:
    assert errors([changed(name="HTTPEvent"), changed(name="HttpEvent")]) == [
        "contracts 'HTTPEvent' and 'HttpEvent' have the same snake_case name 'http_event'; "
        "rename one"
    ]


def test_every_problem_is_reported_one_per_line() -> None:
    contracts = [changed(role="producer"), changed(name="Second", key="nope")]
    assert errors(contracts) == [
        "contract 'OrderPlaced' v1: role 'producer' must be one of: publish, consume, both",
        "contract 'Second' v1: key 'nope' is not one of its fields "
        "(order_id, customer_id, total, placed_at, tags)",
    ]


def test_validation_does_not_change_the_answer() -> None:
    contracts = [order_placed()]
    before = copy.deepcopy(contracts)
    ext.contract_errors(contracts)
    assert contracts == before


# package_name and the other scalar answers


@pytest.mark.parametrize("name", ["orders_service", "billing2", "a", "orders_v2_api"])
def test_good_package_name_is_accepted(name: str) -> None:
    assert ext.package_name_error(name) == ""


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Orders", "package_name 'Orders' must be lowercase letters, digits and underscores"),
        ("orders-service", "starting with a letter (like 'orders_service')"),
        ("1orders", "package_name '1orders' must be lowercase"),
        ("_orders", "package_name '_orders' must be lowercase"),
        ("", "package_name '' must be lowercase"),
        ("class", "package_name 'class' is a Python keyword"),
        ("fastapi", "package_name 'fastapi' would shadow the dependency or folder 'fastapi'"),
        ("sqlalchemy", "would shadow the dependency or folder 'sqlalchemy'"),
        ("tests", "would shadow the dependency or folder 'tests'"),
        ("migrations", "would shadow the dependency or folder 'migrations'"),
        ("logging", "package_name 'logging' would shadow the standard library module 'logging'"),
    ],
)
def test_bad_package_name_is_refused(name: str, message: str) -> None:
    assert message in ext.package_name_error(name)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Orders Service", "orders_service"),
        ("My-API v2", "my_api_v2"),
        ("  Billing -- Hub! ", "billing_hub"),
        ("3D Prints", "x_3d_prints"),
    ],
)
def test_identifier_derives_the_default_package_name(text: str, name: str) -> None:
    assert ext.identifier(text) == name
    assert ext.package_name_error(name) == ""


@pytest.mark.parametrize(
    ("value", "args", "kwargs", "message"),
    [
        (1, ("retry_max_attempts", 1), {}, ""),
        (0, ("retry_max_attempts", 1), {}, "retry_max_attempts must be >= 1 (got 0)"),
        (-3, ("kafka_partitions", 1), {}, "kafka_partitions must be >= 1 (got -3)"),
        (0.1, ("retry_initial_delay_s", 0), {"exclusive": True}, ""),
        (
            0.0,
            ("retry_initial_delay_s", 0),
            {"exclusive": True},
            "retry_initial_delay_s must be > 0 (got 0.0)",
        ),
        (
            float("nan"),
            ("retry_initial_delay_s", 0),
            {"exclusive": True},
            "retry_initial_delay_s must be > 0 (got nan)",
        ),
        (1.0, ("retry_max_delay_s", 1.0), {"minimum_name": "retry_initial_delay_s"}, ""),
        (
            0.5,
            ("retry_max_delay_s", 2.0),
            {"minimum_name": "retry_initial_delay_s"},
            "retry_max_delay_s (0.5) must be >= retry_initial_delay_s (2.0)",
        ),
        (
            True,
            ("retry_max_attempts", 1),
            {},
            "retry_max_attempts must be a number >= 1 (got True)",
        ),
        ("5", ("retry_max_attempts", 1), {}, "retry_max_attempts must be a number >= 1 (got '5')"),
    ],
)
def test_min_error(
    value: object, args: tuple[str, float], kwargs: dict[str, Any], message: str
) -> None:
    assert ext.min_error(value, *args, **kwargs) == message


@pytest.mark.parametrize(
    ("text", "required", "message"),
    [
        ("Orders Service", True, ""),
        ("", False, ""),
        ("", True, "project_name must not be empty"),
        ("  ", True, "project_name must not be empty"),
        ("two\nlines", True, "project_name must be a single line"),
        ('say "hi"', True, "project_name must not contain double quotes or backslashes"),
        ("back\\slash", False, "project_name must not contain double quotes or backslashes"),
    ],
)
def test_text_error(text: str, required: bool, message: str) -> None:
    assert ext.text_error(text, "project_name", required=required).startswith(message)
    assert bool(message) == bool(ext.text_error(text, "project_name", required=required))


# Rendering filters


@pytest.mark.parametrize(
    ("field_type", "annotation"),
    [
        ("str", "str"),
        ("decimal", "Decimal"),
        ("uuid", "UUID"),
        ("datetime", "AwareDatetime"),
        ("date", "date"),
        ("list[date]", "list[date]"),
        ("list[uuid]", "list[UUID]"),
    ],
)
def test_py_type(field_type: str, annotation: str) -> None:
    assert ext.py_type(field_type) == annotation


def test_py_type_refuses_unknown_types() -> None:
    with pytest.raises(ValueError, match="unknown contract field type 'money'"):
        ext.py_type("money")


def test_published_and_consumed_follow_the_role() -> None:
    contracts = COPIER_YML["contracts"]["default"]
    assert [c["name"] for c in ext.published(contracts)] == ["OrderPlaced"]
    assert [c["name"] for c in ext.consumed(contracts)] == ["OrderPlaced", "PaymentReceived"]


def test_contract_imports_are_sorted_and_merged() -> None:
    assert ext.contract_imports(COPIER_YML["contracts"]["default"]) == [
        "from decimal import Decimal",
        "from typing import ClassVar",
        "from uuid import UUID",
        "",
        "from pydantic import AwareDatetime",
    ]
    one = changed(fields={"order_id": "int", "on": "date", "at": "list[datetime]"})
    assert ext.contract_imports(one) == [
        "from datetime import date",
        "from typing import ClassVar",
        "",
        "from pydantic import AwareDatetime",
    ]
    assert ext.contract_imports([changed(fields={"order_id": "str"})]) == [
        "from typing import ClassVar"
    ]


@pytest.mark.parametrize(
    ("name", "snake", "kebab"),
    [
        ("OrderPlaced", "order_placed", "order-placed"),
        ("HTTPRequestFailed", "http_request_failed", "http-request-failed"),
        ("OrderV2Placed", "order_v2_placed", "order-v2-placed"),
        ("Paid", "paid", "paid"),
    ],
)
def test_snake_and_kebab(name: str, snake: str, kebab: str) -> None:
    assert (ext.snake(name), ext.kebab(name)) == (snake, kebab)


def test_class_name() -> None:
    assert ext.class_name(changed(version=3)) == "OrderPlacedV3"


def test_extension_registers_every_filter() -> None:
    env = jinja2.Environment(extensions=[ext.ContractsExtension], autoescape=False)
    template = env.from_string(
        "{{ c | contract_errors }}|{% for x in c | published %}{{ x | class_name }} "
        "{{ x.name | snake }} {{ x.name | kebab }} {{ x.fields.total | py_type }}{% endfor %}|"
        "{{ c | consumed | length }} {{ c | contract_imports | length }} "
        "{{ 'A b' | identifier }}{{ 'a' | package_name_error }}{{ 'x' | text_error('q') }}"
        "{{ 1 | min_error('q', 1) }}"
    )
    assert template.render(c=[order_placed()]) == (
        "|OrderPlacedV1 order_placed order-placed Decimal|1 5 a_b"
    )


# copier.yml itself


def test_copier_yml_settings() -> None:
    assert COPIER_YML["_min_copier_version"] == "9.4.0"
    assert COPIER_YML["_subdirectory"] == "template"
    assert COPIER_YML["_templates_suffix"] == ".jinja"
    assert COPIER_YML["_jinja_extensions"] == [
        "copier_template_extensions.TemplateExtensionLoader",
        "extensions/contracts.py:ContractsExtension",
    ]
    # Minimal tasks: only `uv lock` (scripts/lock.py), after a copy and after an update's merge.
    lock = ["{{ _copier_python }}", "{{ _copier_conf.src_path }}/scripts/lock.py"]
    assert [task["command"] for task in COPIER_YML["_tasks"]] == [lock]
    assert [migration["command"] for migration in COPIER_YML["_migrations"]] == [lock]
    assert COPIER_YML["project_slug"]["when"] is False
    assert COPIER_YML["kafka_partitions"]["when"] == "{{ broker == 'kafka' }}"
    questions = {k: v for k, v in COPIER_YML.items() if not k.startswith("_")}
    assert all("help" in q for name, q in questions.items() if name != "project_slug")


# End to end through copier's API


@pytest.fixture
def template(tmp_path: Path) -> Path:
    # Copy only copier.yml and extensions/, without .git: the repo may have no commit yet and
    # template/ is written elsewhere; copier validates every answer before it renders anything.
    root = tmp_path / "template-repo"
    (root / "template").mkdir(parents=True)
    shutil.copy(ROOT / "copier.yml", root)
    shutil.copytree(ROOT / "extensions", root / "extensions")
    (root / "template" / "answers.txt.jinja").write_text(
        "{{ package_name }} {{ project_slug }} {{ broker }} {{ contracts | length }}\n"
    )
    return root


def run_questions(template: Path, dst: Path, **data: Any) -> None:
    # Without copier.yml's tasks: this template is only copier.yml and one file, no service to lock.
    run_copy(str(template), dst, data=data, defaults=True, unsafe=True, quiet=True, skip_tasks=True)


def test_copier_accepts_the_defaults_and_computes_names(template: Path, tmp_path: Path) -> None:
    run_questions(template, tmp_path / "out")
    assert (tmp_path / "out" / "answers.txt").read_text() == "orders_service orders-service arq 2\n"


def test_copier_accepts_rabbitmq_and_does_not_ask_for_partitions(
    template: Path, tmp_path: Path
) -> None:
    run_questions(template, tmp_path / "out", broker="rabbitmq", kafka_partitions=0)
    assert (tmp_path / "out" / "answers.txt").read_text().endswith(" rabbitmq 2\n")


def test_copier_accepts_nats_and_asks_no_kafka_question(template: Path, tmp_path: Path) -> None:
    run_questions(template, tmp_path / "out", broker="nats", kafka_partitions=0)
    assert (tmp_path / "out" / "answers.txt").read_text().endswith(" nats 2\n")


def test_copier_refuses_a_broker_that_is_not_a_choice(template: Path, tmp_path: Path) -> None:
    choices = "['arq', 'kafka', 'rabbitmq', 'nats']"
    with pytest.raises(ValueError, match=re.escape(f"'pulsar' is not in {choices}")):
        run_questions(template, tmp_path / "out", broker="pulsar")


def test_copier_accepts_kafka_and_validates_its_partitions(template: Path, tmp_path: Path) -> None:
    run_questions(template, tmp_path / "out", broker="kafka")
    assert (tmp_path / "out" / "answers.txt").read_text().endswith(" kafka 2\n")
    message = "Validation error for question 'kafka_partitions': kafka_partitions must be >= 1"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        run_questions(template, tmp_path / "bad", broker="kafka", kafka_partitions=0)


def test_copier_derives_package_name_and_slug(template: Path, tmp_path: Path) -> None:
    run_questions(template, tmp_path / "out", project_name="Billing Hub")
    assert (tmp_path / "out" / "answers.txt").read_text().startswith("billing_hub billing-hub ")


E2E_REFUSALS = [
    pytest.param(
        "contracts",
        [changed(key="order_idd")],
        "Validation error for question 'contracts': "
        "contract 'OrderPlaced' v1: key 'order_idd' is not one of its fields (order_id,",
        id="contract-key",
    ),
    pytest.param(
        "contracts",  # as `--data contracts=...` passes it: a YAML string
        yaml.safe_dump([order_placed(), changed(name="orderPlaced", version=2)]),
        "Validation error for question 'contracts': "
        "contract #2 'orderPlaced': name must be PascalCase like 'OrderPlaced'",
        id="contracts-yaml-string",
    ),
    pytest.param(
        "package_name",
        "Orders-Service",
        "Validation error for question 'package_name': package_name 'Orders-Service' must be",
        id="package-name",
    ),
    pytest.param(
        "retry_max_attempts",
        0,
        "Validation error for question 'retry_max_attempts': "
        "retry_max_attempts must be >= 1 (got 0)",
        id="retry-attempts",
    ),
    pytest.param(
        "retry_initial_delay_s",
        0,
        "Validation error for question 'retry_initial_delay_s': "
        "retry_initial_delay_s must be > 0 (got 0.0)",
        id="retry-initial-delay",
    ),
    pytest.param(
        "retry_max_delay_s",
        0.5,
        "Validation error for question 'retry_max_delay_s': "
        "retry_max_delay_s (0.5) must be >= retry_initial_delay_s (1.0)",
        id="retry-max-delay",
    ),
    pytest.param(
        "project_name",
        "",
        "Validation error for question 'project_name': project_name must not be empty",
        id="project-name",
    ),
]


def test_copier_refuses_the_kafka_retry_topic(template: Path, tmp_path: Path) -> None:
    message = (
        "Validation error for question 'contracts': contract 'OrderPlaced' v1: topic "
        "'orders-service.retry' is this service's own Kafka retry topic; choose another topic"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        run_questions(
            template,
            tmp_path / "out",
            broker="kafka",
            contracts=[changed(topic="orders-service.retry")],
        )


@pytest.mark.parametrize(("question", "value", "message"), E2E_REFUSALS)
def test_copier_refuses_a_bad_answer_with_its_message(
    template: Path, tmp_path: Path, question: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        run_questions(template, tmp_path / "out", **{question: value})
    assert not (tmp_path / "out").exists()


def test_copier_refuses_a_bad_default_package_name(template: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="package_name 'fastapi' would shadow the dependency"):
        run_questions(template, tmp_path / "out", project_name="FastAPI")


def test_import_lists_are_sorted_as_ruff_sorts_them() -> None:
    assert ext.import_list(["ShipmentV10", "PaymentV1", "ShipmentV2"]) == (
        "(\n    PaymentV1,\n    ShipmentV2,\n    ShipmentV10,\n)"
    )
    assert ext.import_list(["OnlyV1"]) == "OnlyV1"


def test_a_rabbitmq_topic_must_leave_its_retry_queue_name_within_255_bytes() -> None:
    service = "s" * 40
    room = 255 - 32 - len(service + "..retry.99999999ms")
    fits, too_long = ("t" * room, "t" * (room + 1))
    assert ext.contract_errors([changed(topic=fits)], broker="rabbitmq", service=service) == ""
    assert ext.contract_errors([changed(topic=too_long)], broker="kafka", service=service) == ""
    message = ext.contract_errors([changed(topic=too_long)], broker="rabbitmq", service=service)
    assert message == (
        f"contract 'OrderPlaced' v1: topic is {room + 1} characters, but with RabbitMQ the "
        f"retry queue '{service}.<topic>.retry.99999999ms' must fit in 255 bytes with 32 left "
        f"for TOPIC_PREFIX: at most {room} characters"
    )


@pytest.mark.parametrize("topic", [".orders", "orders.", "orders..placed", "t." * 30])
def test_a_nats_topic_must_be_a_subject_without_empty_tokens(topic: str) -> None:
    assert ext.contract_errors([changed(topic=topic)], broker="kafka") == ""
    assert ext.contract_errors([changed(topic=topic)], broker="nats") == (
        f"contract 'OrderPlaced' v1: topic {topic!r} is not a valid NATS subject: it may not "
        "start or end with '.' or hold '..'"
    )


def test_nats_and_kafka_topics_may_not_differ_only_in_dots_and_underscores() -> None:
    clash = [changed(topic="billing.invoices"), changed(name="Other", topic="billing_invoices")]
    assert ext.contract_errors(clash, broker="nats") == (
        "topics 'billing.invoices', 'billing_invoices' would share the NATS stream "
        "'billing_invoices' (stream names hold '.' as '_'): spell them alike"
    )
    assert ext.contract_errors(clash, broker="kafka") == (
        "topics 'billing.invoices', 'billing_invoices' collide in Kafka, which refuses topics "
        "differing only in '.' and '_' (as 'billing_invoices'): spell them alike"
    )
    assert ext.contract_errors(clash, broker="arq") == ""
    assert ext.contract_errors(clash, broker="rabbitmq") == ""
    same = [changed(topic="billing.invoices"), changed(name="Other", topic="billing.invoices")]
    assert ext.contract_errors(same, broker="nats") == ""
    assert ext.contract_errors(same, broker="kafka") == ""


def test_a_kafka_topic_may_not_be_the_services_retry_topic() -> None:
    clash = [changed(topic="orders-service.retry")]
    message = ext.contract_errors(clash, broker="kafka", service="orders-service")
    assert message == (
        "contract 'OrderPlaced' v1: topic 'orders-service.retry' is this service's own Kafka "
        "retry topic; choose another topic"
    )
    assert ext.contract_errors(clash, broker="arq", service="orders-service") == ""


# Answers that used to pass the questions and break the render (issue 8)


@pytest.mark.parametrize(
    ("question", "value", "message"),
    [
        ("project_name", "x" * 61, "project_name is too long: 61 characters wide, at most 60"),
        # A wide (CJK) letter takes two columns of a line, as ruff counts it.
        ("project_name", "\u6771" * 31, "project_name is too long: 62 characters wide, at most 60"),
        ("description", "d" * 101, "description is too long: 101 characters wide, at most 100"),
        ("description", "tab\there", "must not contain control characters (found '\\t')"),
        ("description", "nul\x00", "must not contain control characters (found '\\x00')"),
        ("description", "bidi\u202e", "description must not contain control characters"),
        ("package_name", "p" * 41, "package_name 'ppp"),
        ("package_name", "click", "package_name 'click' would shadow the module 'click' that the"),
        ("package_name", "pydantic_core", "package_name 'pydantic_core' would shadow the module"),
        ("package_name", "pytest_asyncio", "package_name 'pytest_asyncio' would shadow the module"),
        ("retry_max_delay_s", float("inf"), "retry_max_delay_s must be <= 86400 (got inf)"),
        ("retry_max_delay_s", "1e400", "retry_max_delay_s must be <= 86400 (got inf)"),
        ("retry_max_delay_s", 86400.5, "retry_max_delay_s must be <= 86400 (got 86400.5)"),
        ("retry_initial_delay_s", "soon", "must be a number > 0 (got 'soon')"),
        ("retry_max_attempts", "abc", "retry_max_attempts must be a number >= 1 (got 'abc')"),
        ("retry_max_attempts", 1001, "retry_max_attempts must be <= 1000 (got 1001)"),
        (
            "contracts",
            "- name: OrderPlaced\n  name: OrderShipped\n",
            "contracts is not valid YAML: duplicate key 'name' (line 2); a key may appear once",
        ),
        (
            "contracts",
            "- {name: OrderPlaced, fields: {a: str, a: int}}",
            "contracts is not valid YAML: duplicate key 'a' (line 1)",
        ),
        ("contracts", "- name: [OrderPlaced", "contracts is not valid YAML: "),
        (
            "contracts",
            [changed(fields={"order_id": "uuid", "l": "str"})],
            "contract 'OrderPlaced' v1: field 'l': name reads like the digit 1",
        ),
        ([changed(name="A" * 33)], None, "is 33 characters long; at most 32"),
        ([changed(version=10_000)], None, "version must be at most 9999, got 10000"),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_copier_refuses_what_would_not_render_clean(
    template: Path, tmp_path: Path, question: object, value: object, message: str
) -> None:
    if isinstance(question, list):  # a contracts answer, refused whatever its position
        question, value = "contracts", question
    with pytest.raises(ValueError, match=f"^Validation error for question '{question}': ") as info:
        run_questions(template, tmp_path / "out", **{str(question): value})
    assert message in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("project_name", "x" * 60),
        ("project_name", "Caf\u00e9 \u2013 \u6771\u4eac Ops"),
        ("description", "d" * 100),
        ("package_name", "p" * 40),
        ("retry_max_delay_s", "86400"),
        ("retry_max_attempts", "7"),  # as --data passes it: text
        ("contracts", yaml.safe_dump([order_placed()], sort_keys=False)),
        ("contracts", [changed(name="A" * 32, version=9999)]),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_copier_accepts_answers_at_the_limits(
    template: Path, tmp_path: Path, question: str, value: object
) -> None:
    run_questions(template, tmp_path / "out", **{question: value})
    assert (tmp_path / "out" / "answers.txt").is_file()


def test_a_kafka_partitions_answer_that_is_no_number_names_the_question(
    template: Path, tmp_path: Path
) -> None:
    refusal = r"^Validation error for question 'kafka_partitions': "
    with pytest.raises(ValueError, match=refusal) as info:
        run_questions(template, tmp_path / "out", broker="kafka", kafka_partitions="abc")
    assert "kafka_partitions must be a number >= 1 (got 'abc')" in str(info.value)


def test_kafka_partitions_are_not_validated_when_the_broker_is_arq(
    template: Path, tmp_path: Path
) -> None:
    run_questions(template, tmp_path / "out", broker="arq", kafka_partitions=0)
    assert (tmp_path / "out" / "answers.txt").read_text().endswith(" arq 2\n")


def test_the_import_order_is_ruffs() -> None:
    # Constants (all caps) first, then classes, each case-insensitively and naturally numbered.
    names = ["OOn21RV3", "OdmN1m4ab2ajzV1", "ABV1", "AbcV10", "AbcV2"]
    assert ext.import_list(names).split() == [
        "(",
        "ABV1,",
        "AbcV2,",
        "AbcV10,",
        "OdmN1m4ab2ajzV1,",
        "OOn21RV3,",
        ")",
    ]


@pytest.mark.parametrize(
    ("value", "indent", "rendered"),
    [
        ("orders", 4, '"orders"'),
        ("t" * 82, 4, '(\n        "' + "t" * 82 + '"\n    )'),
    ],
)
def test_long_strings_are_wrapped_as_ruff_formats_them(
    value: str, indent: int, rendered: str
) -> None:
    assert ext.str_assignment(value, indent=indent, target="TOPIC: ClassVar[str]") == rendered


@pytest.mark.parametrize("question", ["broker", "retry_backoff"])
def test_an_empty_choice_is_refused(template: Path, tmp_path: Path, question: str) -> None:
    # From --data, copier's choice check refuses it before the validator; both name the question.
    with pytest.raises(ValueError, match=f"^Invalid choice for '{question}': '' is not in"):
        run_questions(template, tmp_path / "out", **{question: ""})
    assert f"{question} must be one of: " in ext.choice_error("", question, ["a", "b"])


def test_an_empty_choice_stops_the_render() -> None:
    # A choice prompt runs no validator: the answers file's template refuses the empty answer.
    brokers = ["arq", "kafka", "rabbitmq", "nats"]
    refusal = r"^broker must be one of: arq, kafka, rabbitmq, nats \(got ''\)$"
    with pytest.raises(ValueError, match=refusal):
        ext.refuse(ext.choice_error("", "broker", brokers))
    assert ext.refuse(ext.choice_error("rabbitmq", "broker", brokers)) == ""
    assert ext.refuse(ext.choice_error("nats", "broker", brokers)) == ""
