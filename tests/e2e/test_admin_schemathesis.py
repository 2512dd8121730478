"""schemathesis drives a real node's Admin API from its own `/openapi.json`, in stateful mode.

The document's links chain a create to the created entity's operations and to the collections
nested under it (`/services/{id}/routes`, `/consumers/{id}/key-auth`...), so sequences reach
nested resources with real ids. Every answer must be below 500 and agree with the document:
status code, content type and body schema. Bounded and derandomized (Hypothesis derives the seed
from the test), so that CI runs the same generated data every time, in about a minute.
"""
from __future__ import annotations

import collections

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from meshway.model import ENTITIES

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SETTINGS = hypothesis.settings(max_examples=120, stateful_step_count=10, derandomize=True, database=None,
                               deadline=None, phases=[Phase.explicit, Phase.generate],
                               suppress_health_check=list(HealthCheck), print_blob=True)
# Creates that need a parent are reached through links from the parent's create; started from
# random data they can only answer 400/404, which spends the budget on nothing.
NEED_A_PARENT = {"POST /acls", "POST /basic-auths", "POST /jwts", "POST /key-auths", "POST /targets", "POST /snis"}


COLLECTIONS = {e.nested_path or e.admin_path: e.admin_path for e in ENTITIES.values()} | {
    e.admin_path: e.admin_path for e in ENTITIES.values()}


@pytest.fixture
def admin_schema(node_factory):
    node = node_factory()
    node.start()
    schema = schemathesis.openapi.from_url(node.admin + "/openapi.json")
    schema.admin_url = node.admin
    return schema


def _created_path(case, response) -> str | None:
    """`/services/<id>` for a 2xx create or upsert, so that the scenario can undo it."""
    if case.method not in ("POST", "PUT") or response.status_code not in (200, 201):
        return None
    body = response.json()
    segments = [p for p in case.path.split("/") if p and not p.startswith("{")]
    collection = COLLECTIONS.get(segments[-1]) if segments else None
    return f"/{collection}/{body['id']}" if collection and isinstance(body, dict) and "id" in body else None


def empty_node_for_test(client: httpx.Client, created: list[str]) -> None:
    """Delete what a scenario made, newest first; what is refused (a PATCH pointed an older entity
    at a newer one) goes again once what referenced it is gone."""
    left = list(reversed(created))
    for _ in range(4):
        left = [path for path in left if client.delete(path).status_code not in (204, 404)]
        if not left:
            return
    raise AssertionError(f"the node could not be emptied between scenarios: {left}")


def _roots_with_data(controller: type) -> type:
    class Roots(controller):  # type: ignore[misc, valid-type]
        __slots__ = ()

        def allow_root_transition(self, source: str, bundles) -> bool:
            if "{parent_key}" in source or source in NEED_A_PARENT:
                return False
            return super().allow_root_transition(source, bundles)

    return Roots


def _not_a_reference(schema, operation: str, field: str) -> None:
    """schemathesis takes any `<word>_id` body field for a reference to a `<word>` resource; the
    consumer's `custom_id` is not one, and counting it keeps `POST /consumers` from starting chains."""
    node = schema.analysis.dependency_graph.operations[operation]
    node.inputs = [slot for slot in node.inputs if slot.parameter_name != field]


def machine_for_test(schema, answered: collections.Counter):
    _not_a_reference(schema, "POST /consumers", "custom_id")
    base = schema.as_state_machine()

    class AdminStateMachine(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.control.__class__ = _roots_with_data(type(self.control))

        def setup(self) -> None:
            self.created: list[str] = []

        def after_call(self, response, case) -> None:
            super().after_call(response, case)
            answered[(f"{case.method} {case.path}", response.status_code // 100)] += 1
            created = _created_path(case, response)
            if created:
                self.created.append(created)

        def teardown(self) -> None:
            # Each scenario starts from an empty node: Hypothesis replays scenarios and expects the
            # same answers (a second create of the same name would be a 409 instead of a 201).
            with httpx.Client(base_url=schema.admin_url, timeout=10) as client:
                empty_node_for_test(client, self.created)

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    return AdminStateMachine


def test_stateful_run_finds_no_server_error_and_no_disagreement_with_the_document(admin_schema):
    answered: collections.Counter = collections.Counter()
    machine_for_test(admin_schema, answered).run(settings=SETTINGS)
    nested = {op for (op, kind) in answered if kind == 2 and "{parent_key}" in op}
    # the links work: sequences reached nested collections, consumer credentials among them
    assert len(nested) >= 5 and any(op.startswith(("POST /consumers/", "PUT /consumers/")) for op in nested), \
        sorted(answered.items())
