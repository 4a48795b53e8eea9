"""Every queue, topic and bucket of every template refuses requests that are not made over TLS: its resource
policy denies any action to anyone when `aws:SecureTransport` is false. Encryption at rest (the KMS key,
SQS-managed SSE) is checkov's part."""

from __future__ import annotations

from typing import Any

import pytest

from tests.template.templates import TEMPLATES, load_plain

# Resource type -> (its policy's type, the policy property listing what it applies to, the service prefix,
# how a statement's Resource names the resource).
GUARDED: dict[str, tuple[str, str, str, Any]] = {
    "AWS::SQS::Queue": ("AWS::SQS::QueuePolicy", "Queues", "sqs", lambda lid: [{"Fn::GetAtt": [lid, "Arn"]}]),
    "AWS::SNS::Topic": ("AWS::SNS::TopicPolicy", "Topics", "sns", lambda lid: [{"Ref": lid}]),
    "AWS::S3::Bucket": (
        "AWS::S3::BucketPolicy",
        "Bucket",
        "s3",
        lambda lid: [{"Fn::GetAtt": [lid, "Arn"]}, {"Fn::Sub": f"${{{lid}.Arn}}/*"}],
    ),
}


@pytest.fixture(scope="module", params=TEMPLATES, ids=lambda p: p.name)
def template(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_plain(request.param)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def denies_plain_http(statement: dict[str, Any], service: str, names: list[Any]) -> bool:
    """A Deny to everyone, of every action of the service, on all of `names`, when TLS is not used."""
    return (
        statement.get("Effect") == "Deny"
        and statement.get("Principal") == "*"
        and set(_listed(statement.get("Action"))) & {f"{service}:*", "*"} != set()
        and all(name in _listed(statement.get("Resource")) for name in names)
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    )


def unguarded(template: dict[str, Any]) -> list[str]:
    """Every queue, topic and bucket that no policy of the template closes to plain HTTP."""
    resources = template["Resources"]
    missing = []
    for logical_id, resource in sorted(resources.items()):
        if resource["Type"] not in GUARDED:
            continue
        policy_type, applies_to, service, names = GUARDED[resource["Type"]]
        guarded = any(
            policy["Type"] == policy_type
            and {"Ref": logical_id} in _listed(policy["Properties"][applies_to])
            and any(
                denies_plain_http(statement, service, names(logical_id))
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            )
            for policy in resources.values()
        )
        if not guarded:
            missing.append(f"{resource['Type']} {logical_id}")
    return missing


def test_every_queue_topic_and_bucket_refuses_plain_http(template: dict[str, Any]) -> None:
    assert unguarded(template) == []


def test_the_templates_have_what_must_be_guarded() -> None:
    # If these were empty the check above would pass vacuously.
    kinds = {resource["Type"] for path in TEMPLATES for resource in load_plain(path)["Resources"].values()}
    assert set(GUARDED) <= kinds


def test_a_policy_that_lost_its_deny_is_caught() -> None:
    mutated = load_plain()
    statements = mutated["Resources"]["TopicsPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statements[:] = [s for s in statements if s.get("Sid") != "DenyInsecureTransport"]
    assert unguarded(mutated) == [
        "AWS::SNS::Topic MlGovernanceTopic",
        "AWS::SNS::Topic PlatformTopic",
        "AWS::SNS::Topic SecurityTopic",
    ]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(Condition={"Bool": {"aws:SecureTransport": "true"}}),
        lambda s: s.update(Action="sqs:SendMessage"),
        lambda s: s.update(Principal={"Service": "events.amazonaws.com"}),
        lambda s: s.update(Resource=[{"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}]),
    ],
    ids=["wrong-condition", "one-action", "one-principal", "one-queue"],
)
def test_a_narrowed_deny_is_caught(mutate: Any) -> None:
    mutated = load_plain()
    policy = mutated["Resources"]["EventBridgeDeliversToQueuesPolicy"]["Properties"]["PolicyDocument"]
    (deny,) = [s for s in policy["Statement"] if s.get("Sid") == "DenyInsecureTransport"]
    mutate(deny)
    assert "AWS::SQS::Queue ConfigComplianceQueue" in unguarded(mutated)


def test_a_new_queue_without_a_policy_is_caught() -> None:
    mutated = load_plain()
    mutated["Resources"]["AnotherQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    assert unguarded(mutated) == ["AWS::SQS::Queue AnotherQueue"]
