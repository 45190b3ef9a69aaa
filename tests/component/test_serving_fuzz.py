"""mlpipe serve fuzzed from its own OpenAPI schema (schemathesis): no 5xx, and every 4xx names the problem.

The running server's ``/openapi.json`` describes every route, the request body of /predict and
/explain included (the served champion's records model: :mod:`mlpipe.serving.openapi`). Each
operation is called with :data:`EXAMPLES` derandomized examples (Hypothesis, a fixed seed, no
example database, no shrinking) in each generation mode: *positive* (what the schema allows:
records of every feature with numbers, strings and nulls) and *negative* (what it forbids:
missing and unknown fields, wrong types, not an object...). Every answer is held to
schemathesis' own checks (its status code, content type and body as the schema declares; a
forbidden body refused, an allowed one accepted) and to ours: never a 5xx, and every 4xx has a
``detail`` that names the problem (a non-empty message, or for a 422 each invalid part's
location in the body and what is wrong there).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import negative_data_rejection

EXAMPLES = 100  # per operation and generation mode


def names_the_problem(response: requests.Response) -> str | None:
    """Why a 4xx answer does not name its problem (``None``: it does)."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return f"no JSON detail: {response.text[:200]!r}"
    if isinstance(detail, str):
        return None if detail.strip() else "an empty detail"
    if isinstance(detail, list) and detail:
        vague = [item for item in detail if not (isinstance(item, dict) and item.get("loc") and item.get("msg"))]
        return f"parts without a location or message: {vague[:3]}" if vague else None
    return f"a detail that names nothing: {detail!r}"


def modes(operation: schemathesis.APIOperation) -> tuple[GenerationMode, ...]:
    """Positive examples always; negative ones where there is something to get wrong (a body, parameters)."""
    inputs = (operation.body, operation.query, operation.headers, operation.path_parameters, operation.cookies)
    if any(len(part) for part in inputs):
        return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return (GenerationMode.POSITIVE,)


def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, url: str, session: requests.Session,
         statuses: Counter, failures: list[str]) -> None:
    """Call ``operation`` with :data:`EXAMPLES` examples of ``mode``; count the statuses, collect the failures."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, session=session)
        statuses[(operation.label, mode.value, response.status_code)] += 1
        found = []
        if response.status_code >= 500:
            found.append(f"a {response.status_code}: {response.text[:300]!r}")
        elif response.status_code >= 400 and (why := names_the_problem(response)) is not None:
            found.append(f"a {response.status_code} that does not name its problem: {why}")
        # a 413 (past the body or record limit) refuses the request too, but schemathesis' rejection statuses
        # lack it: its negative-data check would read a refused oversized body as accepted
        excluded = [negative_data_rejection] if response.status_code == 413 else []
        try:
            case.validate_response(response, excluded_checks=excluded)
        except FailureGroup as group:  # schemathesis' failed checks
            found.extend(f"{failure.title}: {failure.message}" for failure in group.exceptions)
        failures.extend(f"{operation.label} ({mode.value}): {what}\n  {case.as_curl_command()[:400]}"
                        for what in found)

    call()


def test_fuzzed_from_its_openapi_schema_no_5xx_and_every_4xx_names_the_problem(server):
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(operation.label for operation in operations) == [
        "GET /health", "GET /metadata", "GET /metrics", "GET /ready",
        "POST /explain", "POST /predict", "POST /reload"]
    statuses: Counter[tuple[str, str, int]] = Counter()
    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations:
            for mode in modes(operation):
                fuzz(operation, mode, server, session, statuses, failures)
    print_statuses(statuses)
    assert failures == []
    body_cases = {label: sum(n for (op, _, _), n in statuses.items() if op == label)
                  for label in ("POST /predict", "POST /explain")}
    assert body_cases == {"POST /predict": 2 * EXAMPLES, "POST /explain": 2 * EXAMPLES}
    for label in body_cases:  # allowed bodies were answered, forbidden ones refused
        assert statuses[(label, "positive", 200)] == EXAMPLES
        assert statuses[(label, "negative", 422)] > 0


def print_statuses(statuses: Counter[tuple[str, str, int]]) -> None:
    cases: dict[str, Any] = {}
    for (label, mode, status), count in sorted(statuses.items()):
        cases.setdefault(label, []).append(f"{mode} {status}: {count}")
    print(f"\nfuzzed {sum(statuses.values())} cases:")
    for label, counts in cases.items():
        print(f"  {label:<14} {', '.join(counts)}")
