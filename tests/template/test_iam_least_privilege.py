"""Every IAM policy in every template is least privilege: no `*` action, no service wildcard, and
`Resource: "*"` only for the listed actions that have no resource-level permissions."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cfnlint.data import AdditionalSpecs
from cfnlint.helpers import load_resource
from samtranslator.policy_templates_data import POLICY_TEMPLATES_FILE

from tests.template.templates import ROOT, TEMPLATES, plain
from tests.template.templates import decoded as load

# The Service Authorization Reference as cfn-lint ships it: action -> the resource types it can be
# scoped to ({} = none, i.e. the action only works with Resource "*").
IAM_ACTIONS: dict[str, Any] = load_resource(AdditionalSpecs, "Policies.json")
# SAM policy templates (`LambdaInvokePolicy: {FunctionName: ...}`) expand into these statements.
SAM_POLICY_TEMPLATES: dict[str, Any] = json.loads(Path(POLICY_TEMPLATES_FILE).read_text())["Templates"]

# The only actions an identity policy may grant on Resource "*". Each has no resource-level
# permissions (checked against the table above by a test below), and each is here for a reason.
UNSCOPED_ACTIONS_ALLOWED: dict[str, str] = {
    # Step Functions delivers execution logs to CloudWatch Logs through the log-delivery API.
    "logs:CreateLogDelivery": "state machine logging",
    "logs:GetLogDelivery": "state machine logging",
    "logs:UpdateLogDelivery": "state machine logging",
    "logs:DeleteLogDelivery": "state machine logging",
    "logs:ListLogDeliveries": "state machine logging",
    "logs:PutResourcePolicy": "state machine logging",
    "logs:DescribeResourcePolicies": "state machine logging",
    "logs:DescribeLogGroups": "state machine logging",
    # Remediation finds world-open ingress rules and stopped trails; the events do not name them all.
    "ec2:DescribeSecurityGroups": "remediation: open security groups",
    "ec2:DescribeSecurityGroupRules": "remediation: open security groups",
    "cloudtrail:DescribeTrails": "remediation: trails that stopped logging",
    # The forwarding watch reads the member forwarding rules' lost events (InvocationsFailedToBeSentToDlq).
    "cloudwatch:GetMetricStatistics": "forwarding watch: events lost in member accounts",
    # Account baseline: account-level settings, there is no resource to scope them to.
    "s3:GetAccountPublicAccessBlock": "baseline: account public access block",
    "s3:PutAccountPublicAccessBlock": "baseline: account public access block",
    "ec2:GetEbsEncryptionByDefault": "baseline: EBS encryption by default",
    "ec2:EnableEbsEncryptionByDefault": "baseline: EBS encryption by default",
    "iam:GetAccountPasswordPolicy": "baseline: prod account password policy",
    "iam:UpdateAccountPasswordPolicy": "baseline: prod account password policy",
}

# Resource-based policies (key, queue, topic, bucket, bus) are not identity policies: their Resource
# is the resource itself ("*" in a key policy means "this key"), and what matters is WHO is allowed.
# So they are checked separately: no wildcard Allow, an anonymous principal only with a condition.
RESOURCE_POLICY_PROPERTIES = {
    "AWS::KMS::Key": "KeyPolicy",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::Events::EventBus": "Policy",
    "AWS::Events::EventBusPolicy": "Statement",
    "AWS::ECR::Repository": "RepositoryPolicyText",
}
# The one documented exception: a KMS key policy must let the account administer its key (without it
# the key becomes unmanageable, AWS KMS Developer Guide "Default key policy"); IAM policies of the
# account then decide who may use it.
KEY_ADMINISTRATION = {
    "Effect": "Allow",
    "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}},
    "Action": "kms:*",
    "Resource": "*",
}


@dataclass(frozen=True)
class Statement:
    where: str  # template:Resource.Property[index] for the failure message
    body: dict[str, Any]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements_of(document: Any, where: str) -> Iterator[Statement]:
    if isinstance(document, dict) and set(document) == {"Fn::If"}:
        _, when_true, when_false = document["Fn::If"]
        yield from statements_of(when_true, f"{where}(if)")
        yield from statements_of(when_false, f"{where}(else)")
        return
    if isinstance(document, dict) and "Statement" in document:
        document = document["Statement"]
    for index, statement in enumerate(as_list(document)):
        if isinstance(statement, dict) and set(statement) == {"Fn::If"}:
            yield from statements_of(statement, f"{where}[{index}]")
        elif isinstance(statement, dict) and statement != {"Ref": "AWS::NoValue"}:
            yield Statement(f"{where}[{index}]", statement)


def identity_statements(template: dict[str, Any], name: str) -> Iterator[Statement]:
    """Every statement of every identity policy: SAM Policies, managed and inline IAM policies."""
    resources = template["Resources"]
    managed = {lid for lid, r in resources.items() if r["Type"] == "AWS::IAM::ManagedPolicy"}
    for logical_id, resource in resources.items():
        kind = resource["Type"]
        properties = resource.get("Properties") or {}
        where = f"{name}:{logical_id}"
        if kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            for index, item in enumerate(as_list(properties.get("Policies", []))):
                yield from sam_policy_statements(item, f"{where}.Policies[{index}]", managed)
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            yield from statements_of(properties["PolicyDocument"], f"{where}.PolicyDocument")
        elif kind in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            for index, policy in enumerate(properties.get("Policies", [])):
                yield from statements_of(policy["PolicyDocument"], f"{where}.Policies[{index}]")
            for arn in properties.get("ManagedPolicyArns", []):
                yield from attached_policy(arn, f"{where}.ManagedPolicyArns", managed)


def sam_policy_statements(item: Any, where: str, managed: set[str]) -> Iterator[Statement]:
    if isinstance(item, dict) and "Statement" in item:
        yield from statements_of(item, where)
    elif isinstance(item, dict) and len(item) == 1 and next(iter(item)) in SAM_POLICY_TEMPLATES:
        (template_name,) = item
        definition = SAM_POLICY_TEMPLATES[template_name]["Definition"]
        yield from statements_of(definition, f"{where}({template_name})")
    else:
        yield from attached_policy(item, where, managed)


def attached_policy(reference: Any, where: str, managed: set[str]) -> Iterator[Statement]:
    """A policy attached by reference must be one of the template's own (checked on its own);
    an AWS managed policy cannot be reviewed here, so it is reported as a finding."""
    if isinstance(reference, dict) and reference.get("Ref") in managed:
        return
    yield Statement(where, {"Effect": "Allow", "Action": f"<attached policy {reference!r}>", "Resource": "*"})


def resource_statements(template: dict[str, Any], name: str) -> Iterator[Statement]:
    for logical_id, resource in template["Resources"].items():
        prop = RESOURCE_POLICY_PROPERTIES.get(resource["Type"])
        properties = resource.get("Properties") or {}
        if prop and prop in properties:
            yield from statements_of(properties[prop], f"{name}:{logical_id}.{prop}")


def is_wildcard(action: Any) -> bool:
    return not isinstance(action, str) or "*" in action


def is_service_wildcard(action: Any) -> bool:
    """`*` or `service:*`: every action, or every action of a service."""
    return not isinstance(action, str) or action == "*" or action.endswith(":*")


def identity_findings(statement: Statement) -> list[str]:
    """Why an identity statement is not least privilege (empty when it is)."""
    body = statement.body
    if body.get("Effect") == "Deny":
        return []  # a Deny only takes away; wildcards there are the safe direction
    findings = [f"{key} in an Allow" for key in ("NotAction", "NotResource") if key in body]
    actions = as_list(body.get("Action", []))
    findings += [
        f"wildcard action {action!r}"
        for action in actions
        if is_wildcard(action) and action not in UNSCOPED_ACTIONS_ALLOWED
    ]
    if "*" in as_list(body.get("Resource", [])):
        findings += [
            f"Resource '*' for {action!r}, which is not in the allow-list of actions without "
            "resource-level permissions"
            for action in actions
            if action not in UNSCOPED_ACTIONS_ALLOWED
        ]
    return findings


def resource_policy_findings(statement: Statement) -> list[str]:
    body = statement.body
    if body.get("Effect") == "Deny":
        return []
    without_sid = {key: value for key, value in plain(body).items() if key != "Sid"}
    if ".KeyPolicy[" in statement.where and without_sid == KEY_ADMINISTRATION:
        return []
    findings = [f"{key} in an Allow" for key in ("NotAction", "NotPrincipal") if key in body]
    # Prefix patterns stay allowed here: AWS documents some key policies with them (CloudWatch Logs
    # needs kms:ReEncrypt* and kms:GenerateDataKey* on a log group's key), and the principal is a service.
    findings += [f"wildcard action {a!r}" for a in as_list(body.get("Action", [])) if is_service_wildcard(a)]
    principal = body.get("Principal")
    anonymous = principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS", [])))
    if anonymous and not body.get("Condition"):
        findings.append("Allow to any principal without a condition")
    return findings


def all_findings(template: dict[str, Any], name: str) -> list[str]:
    found = [
        f"{s.where}: {finding}"
        for s in identity_statements(template, name)
        for finding in identity_findings(s)
    ]
    found += [
        f"{s.where}: {finding}"
        for s in resource_statements(template, name)
        for finding in resource_policy_findings(s)
    ]
    return found


@pytest.fixture(scope="module", params=TEMPLATES, ids=lambda p: p.name)
def template(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    path: Path = request.param
    return path.name, plain(load(path))


@pytest.fixture(scope="module")
def backbone() -> dict[str, Any]:
    return plain(load(ROOT / "template.yaml"))


# ---------------------------------------------------------------- the templates


def test_every_template_policy_is_least_privilege(template: tuple[str, dict[str, Any]]) -> None:
    name, document = template
    assert not all_findings(document, name)


def test_the_checks_see_the_policies(template: tuple[str, dict[str, Any]]) -> None:
    """A reader that found nothing would pass every template: make sure it reads real statements."""
    name, document = template
    statements = list(identity_statements(document, name))
    assert statements and all(s.body.get("Action") for s in statements)


def test_backbone_policies_are_all_read(backbone: dict[str, Any]) -> None:
    where = {s.where.split(".")[0] for s in identity_statements(backbone, "t")}
    functions_and_machines = {
        f"t:{lid}"
        for lid, r in backbone["Resources"].items()
        if r["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
        and any(isinstance(p, dict) and "Ref" not in p for p in r["Properties"].get("Policies", []))
    }
    assert functions_and_machines <= where
    resource_where = {s.where.split(".")[0] for s in resource_statements(backbone, "t")}
    assert {"t:GovernanceKey", "t:GovernanceEventBus", "t:CentralArtifactBucketPolicy"} <= resource_where


def test_allow_list_holds_only_actions_without_resource_level_permissions() -> None:
    for action in UNSCOPED_ACTIONS_ALLOWED:
        service, _, name = action.partition(":")
        assert "*" not in action, action
        assert IAM_ACTIONS[service]["Actions"][name.lower()] == {}, f"{action} can be scoped to a resource"


def test_allow_list_is_short_and_used() -> None:
    """Entries nobody needs any more are removed, so the list stays a reviewed exception."""
    used = {
        action
        for path in TEMPLATES
        for s in identity_statements(plain(load(path)), path.name)
        if "*" in as_list(s.body.get("Resource", []))
        for action in as_list(s.body.get("Action", []))
    }
    assert set(UNSCOPED_ACTIONS_ALLOWED) <= used, set(UNSCOPED_ACTIONS_ALLOWED) - used
    assert len(UNSCOPED_ACTIONS_ALLOWED) <= 25


def test_the_key_administration_exception_is_the_account_root_only(backbone: dict[str, Any]) -> None:
    key_policy = [
        statement.body
        for statement in statements_of(
            backbone["Resources"]["GovernanceKey"]["Properties"]["KeyPolicy"], "key"
        )
    ]
    wildcard = [s for s in key_policy if any(is_service_wildcard(a) for a in as_list(s["Action"]))]
    assert [{k: v for k, v in s.items() if k != "Sid"} for s in wildcard] == [KEY_ADMINISTRATION]


# ---------------------------------------------------------------- the checks can fail (mutated copies)


def _function_statements(document: dict[str, Any], function: str) -> list[dict[str, Any]]:
    policies = document["Resources"][function]["Properties"]["Policies"]
    inline = next(p for p in policies if isinstance(p, dict) and "Statement" in p)
    return inline["Statement"]  # type: ignore[no-any-return]


def _first_function_with_inline_policy(document: dict[str, Any]) -> str:
    return next(
        lid
        for lid, r in document["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
        and any(isinstance(p, dict) and "Statement" in p for p in r["Properties"].get("Policies", []))
    )


@pytest.mark.parametrize(
    ("added", "expected"),
    [
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, "wildcard action '*'"),
        ({"Effect": "Allow", "Action": ["s3:GetObject", "s3:*"], "Resource": "arn:aws:s3:::b/*"}, "'s3:*'"),
        ({"Effect": "Allow", "Action": "sagemaker:*", "Resource": "arn:aws:sagemaker:*"}, "'sagemaker:*'"),
        ({"Effect": "Allow", "Action": "sagemaker:Describe*", "Resource": "x"}, "'sagemaker:Describe*'"),
        (
            {"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"},
            "Resource '*' for 'dynamodb:PutItem'",
        ),
        ({"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}, "not in the allow-list"),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "NotAction in an Allow"),
    ],
)
def test_a_widened_function_policy_is_caught(
    backbone: dict[str, Any], added: dict[str, Any], expected: str
) -> None:
    mutated = copy.deepcopy(backbone)
    _function_statements(mutated, _first_function_with_inline_policy(mutated)).append(added)
    findings = all_findings(mutated, "mutated")
    assert any(expected in finding for finding in findings), findings


def test_a_widened_managed_policy_is_caught(backbone: dict[str, Any]) -> None:
    mutated = copy.deepcopy(backbone)
    managed = next(r for r in mutated["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy")
    managed["Properties"]["PolicyDocument"]["Statement"][0]["Resource"] = "*"
    assert all_findings(mutated, "mutated")


def test_a_wildcard_sam_policy_template_or_an_aws_managed_policy_is_caught(backbone: dict[str, Any]) -> None:
    for policy in (
        {"CloudWatchPutMetricPolicy": {}},
        {"VPCAccessPolicy": {}},
        "AdministratorAccess",
    ):
        mutated = copy.deepcopy(backbone)
        function = _first_function_with_inline_policy(mutated)
        mutated["Resources"][function]["Properties"]["Policies"].append(policy)
        assert all_findings(mutated, "mutated"), policy


def test_a_widened_member_role_is_caught() -> None:
    member = plain(load(ROOT / "templates" / "member-account.yaml"))
    role = member["Resources"]["GovernanceExecutionRole"]["Properties"]
    role["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"] = "sagemaker:*"
    assert any("sagemaker:*" in f for f in all_findings(member, "member"))


@pytest.mark.parametrize(
    "mutate",
    [
        # a queue policy that lets EventBridge do anything with the queue
        lambda d: d["Resources"]["EventBridgeDeliversToQueuesPolicy"]["Properties"]["PolicyDocument"][
            "Statement"
        ][0].update(Action="sqs:*"),
        # kms:* for a principal other than the account root
        lambda d: d["Resources"]["GovernanceKey"]["Properties"]["KeyPolicy"]["Statement"][0].update(
            Principal={"AWS": "arn:aws:iam::210987654321:root"}
        ),
        # the organization condition dropped from the bus policy: anyone could put events
        lambda d: d["Resources"]["GovernanceEventBus"]["Properties"]["Policy"]["Statement"][0].pop(
            "Condition"
        ),
    ],
    ids=["queue-policy-sqs-star", "key-admin-other-principal", "bus-without-org-condition"],
)
def test_a_widened_resource_policy_is_caught(backbone: dict[str, Any], mutate: Any) -> None:
    mutated = copy.deepcopy(backbone)
    mutate(mutated)
    assert all_findings(mutated, "mutated")


def _senders_of(template: dict[str, Any], queue: str) -> list[dict[str, Any]]:
    """The statements of any queue policy that let EventBridge send to `queue` (a logical id)."""
    arn = {"Fn::GetAtt": [queue, "Arn"]}
    return [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::SQS::QueuePolicy"
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
        and statement.get("Principal") == {"Service": "events.amazonaws.com"}
        and arn
        in (statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]])
    ]


def compliance_queue_problems(template: dict[str, Any]) -> list[str]:
    """The compliance queue's messages are acted on in member accounts: only the Config rule may send."""
    rule = {"Fn::GetAtt": ["ConfigNonComplianceRule", "Arn"]}
    return [
        f"{statement.get('Sid', '?')}: EventBridge may send to ConfigComplianceQueue for more than the rule"
        for statement in _senders_of(template, "ConfigComplianceQueue")
        if statement.get("Condition") != {"ArnEquals": {"aws:SourceArn": rule}}
    ]


def test_only_the_config_rule_may_fill_the_compliance_queue(backbone: dict[str, Any]) -> None:
    assert _senders_of(backbone, "ConfigComplianceQueue")
    assert compliance_queue_problems(backbone) == []


def test_a_compliance_queue_open_to_any_rule_of_the_account_is_caught(backbone: dict[str, Any]) -> None:
    mutated = copy.deepcopy(backbone)
    policy = mutated["Resources"]["EventBridgeDeliversToQueuesPolicy"]["Properties"]["PolicyDocument"]
    (sender,) = [s for s in policy["Statement"] if s.get("Sid") == "ConfigRuleFillsTheComplianceQueue"]
    sender["Condition"] = {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert compliance_queue_problems(mutated)


def _when_deployment_accounts(statements: list[Any]) -> list[dict[str, Any]]:
    """The statements a list holds under `Fn::If: [HasDeploymentAccounts, ..., AWS::NoValue]`."""
    found = []
    for statement in statements:
        if isinstance(statement, dict) and set(statement) == {"Fn::If"}:
            condition, when_true, when_false = statement["Fn::If"]
            assert (condition, when_false) == ("HasDeploymentAccounts", {"Ref": "AWS::NoValue"})
            found.append(when_true)
    return found


def test_the_deployment_accounts_read_the_central_artifacts_and_nothing_more(
    backbone: dict[str, Any],
) -> None:
    """DeploymentAccountIds shares the central versions with the accounts the pipelines deploy into:
    their objects, decrypted only by way of S3; nothing when it is empty (the default)."""
    resources = backbone["Resources"]
    parameter = backbone["Parameters"]["DeploymentAccountIds"]
    assert parameter["Default"] == ""
    assert backbone["Conditions"]["HasDeploymentAccounts"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DeploymentAccountIds"}, ""]}]
    }
    accounts = {"AWS": {"Fn::Split": [",", {"Ref": "DeploymentAccountIds"}]}}
    [decrypt] = _when_deployment_accounts(resources["GovernanceKey"]["Properties"]["KeyPolicy"]["Statement"])
    assert (decrypt["Principal"], decrypt["Action"]) == (accounts, "kms:Decrypt")
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}
    }
    bucket_policy = resources["CentralArtifactBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [read] = _when_deployment_accounts(bucket_policy)
    assert (read["Principal"], read["Action"]) == (accounts, ["s3:GetObject", "s3:GetObjectVersion"])
    assert read["Resource"] == {"Fn::Sub": "${CentralArtifactBucket.Arn}/*"}
    for function in ("PromoteModelFunction", "DeployModelFunction"):
        policies = resources[function]["Properties"]["Policies"]
        [inline] = [p for p in policies if isinstance(p, dict) and "Statement" in p]
        [share] = _when_deployment_accounts(inline["Statement"])
        assert share["Action"] == [
            "sagemaker:GetModelPackageGroupPolicy",
            "sagemaker:PutModelPackageGroupPolicy",
        ], function
