"""schemathesis against the REST API's own OpenAPI schema, for every role (anonymous, agent, supervisor, admin):
no 500s, and no response that contradicts the schema (status code, content type, body). A real server over HTTP,
bounded by `EXAMPLES` generated cases per operation."""
from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")  # requirements/test.txt

from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fakes import fake_components  # noqa: E402
from people_helpers import add_users, build_app, login, make_settings, serve  # noqa: E402

pytestmark = pytest.mark.e2e
EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SKIP = {("POST", "/api/auth/logout")}  # would end the session the other cases use; covered by the access tests


def test_every_operation_for_every_role_conforms(tmp_path):
    settings = make_settings(tmp_path, public_docs=True)
    add_users(settings, [("mei", "agent", "en"), ("sam", "supervisor", ""), ("root", "admin", "")])
    app = build_app(settings, components=fake_components())
    failures: list[str] = []
    with serve(app, settings, ready_timeout=60) as base:
        roles = {"anonymous": {}, **{name: {"Authorization": f"Bearer {login(base, name)}"} for name in ("mei", "sam", "root")}}
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        assert len(operations) >= 15
        for op in operations:
            if (op.method.upper(), op.path) not in SKIP:
                _check_operation(op, base, roles, failures)
    assert failures == [], "\n".join(sorted(set(failures))[:30])


def _check_operation(op, base: str, roles: dict, failures: list[str]) -> None:
    @given(case=op.as_strategy())
    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        for role, headers in roles.items():
            response = case.call(base_url=base, headers=headers)
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a group: collect them all
                detail = " | ".join(line.strip() for line in str(exc).splitlines()[1:6] if line.strip())
                failures.append(f"{op.method.upper()} {op.path} as {role} [{response.status_code}]: {detail[:240]}")
                return

    check()
