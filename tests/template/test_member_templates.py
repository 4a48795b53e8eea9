"""Checks of the member- and management-account templates: role trust, least privilege, forwarding, lint."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.data import AdditionalSpecs
from cfnlint.helpers import load_resource
from moto.events.models import EventPattern

from tests.template.templates import (
    ROOT,
    alarms_on,
    of_type,
    rules_losing_events_unseen,
    rules_with_dead_letter_queues,
)
from tests.template.templates import decoded as load

MEMBER = ROOT / "templates" / "member-account.yaml"
MANAGEMENT = ROOT / "templates" / "management-account.yaml"
TEMPLATES = [MEMBER, MANAGEMENT]

GOVERNANCE_BUS_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:events:${GovernanceRegion}:${GovernanceAccountId}"
    ":event-bus/${GovernanceEventBusName}"
}
# Every action the Service Authorization Reference knows, with the resource types it can be scoped to
# (cfn-lint ships this table; it is what its own IAM rules use).
IAM_ACTIONS: dict[str, Any] = load_resource(AdditionalSpecs, "Policies.json")


@pytest.fixture(scope="module")
def member() -> dict[str, Any]:
    return load(MEMBER)


@pytest.fixture(scope="module")
def management() -> dict[str, Any]:
    return load(MANAGEMENT)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every statement of every policy document anywhere in a template (roles, queue policies, ...)."""
    if isinstance(node, dict):
        if isinstance(node.get("Statement"), list):
            yield from node["Statement"]
        for value in node.values():
            yield from policy_statements(value)
    elif isinstance(node, list):
        for item in node:
            yield from policy_statements(item)


def wildcard_actions(statement: dict[str, Any]) -> list[str]:
    """Actions of a statement that are "*", a service wildcard ("s3:*") or any other pattern."""
    problems = [f"NotAction {statement['NotAction']!r}"] if "NotAction" in statement else []
    problems += [a for a in as_list(statement.get("Action", [])) if not isinstance(a, str) or "*" in a]
    return problems


def actions_without_resource_types(actions: list[str]) -> tuple[list[str], list[str]]:
    """Split actions into (no resource-level permissions, scopable or unknown)."""
    unscoped: list[str] = []
    scopable: list[str] = []
    for action in actions:
        service, _, name = action.partition(":")
        known = IAM_ACTIONS.get(service.lower(), {}).get("Actions", {}).get(name.lower())
        (unscoped if known == {} else scopable).append(action)
    return unscoped, scopable


def comment_above(path: Path, node: Any) -> str:
    """The block of comment lines directly above a YAML node (cfn-lint nodes keep their position)."""
    lines = path.read_text().splitlines()
    index = node.start_mark.line - 1
    block: list[str] = []
    while index >= 0 and lines[index].strip().startswith("#"):
        block.insert(0, lines[index].strip())
        index -= 1
    return " ".join(block)


def allowed_pattern(template: dict[str, Any], parameter: str) -> re.Pattern[str]:
    # CloudFormation matches AllowedPattern against the whole value.
    return re.compile(template["Parameters"][parameter]["AllowedPattern"])


# ---------------------------------------------------------------- the checks can fail


@pytest.mark.parametrize(
    ("statement", "flagged"),
    [
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, ["*"]),
        ({"Effect": "Allow", "Action": ["s3:GetObject", "s3:*"], "Resource": "*"}, ["s3:*"]),
        ({"Effect": "Allow", "Action": "sagemaker:Describe*", "Resource": "*"}, ["sagemaker:Describe*"]),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, ["NotAction 'iam:*'"]),
        ({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}, []),
    ],
)
def test_wildcard_check_flags_what_it_must(statement: dict[str, Any], flagged: list[str]) -> None:
    assert wildcard_actions(statement) == flagged


def test_resource_level_table_knows_scoped_and_unscoped_actions() -> None:
    unscoped, scopable = actions_without_resource_types(
        ["tag:GetResources", "ec2:GetEbsEncryptionByDefault", "s3:PutBucketPolicy", "sagemaker:NoSuchAction"]
    )
    assert unscoped == ["tag:GetResources", "ec2:GetEbsEncryptionByDefault"]
    assert scopable == ["s3:PutBucketPolicy", "sagemaker:NoSuchAction"]


# ---------------------------------------------------------------- GovernanceExecutionRole


def test_execution_role_trusts_only_backbone_function_roles_of_the_organization(member: dict) -> None:
    role = member["Resources"]["GovernanceExecutionRole"]
    assert role["Properties"]["RoleName"] == "GovernanceExecutionRole"
    statements = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert len(statements) == 1
    trust = statements[0]
    assert trust["Effect"] == "Allow"
    assert as_list(trust["Action"]) == ["sts:AssumeRole"]
    assert trust["Principal"] == {
        "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${GovernanceAccountId}:root"}
    }
    assert trust["Condition"] == {
        "ArnLike": {
            "aws:PrincipalArn": {
                "Fn::Sub": "arn:${AWS::Partition}:iam::${GovernanceAccountId}:role${BackboneRolePath}*"
            }
        },
        "StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}},
    }


def test_trust_parameters_cannot_widen_the_trust(member: dict) -> None:
    path = allowed_pattern(member, "BackboneRolePath")
    assert member["Parameters"]["BackboneRolePath"]["Default"] == "/ml-governance/"
    assert path.fullmatch("/ml-governance/")
    assert path.fullmatch("/ml-governance/functions/")
    for too_wide in ["/", "", "*", "/ml-governance", "/ml-governance/*"]:
        assert not path.fullmatch(too_wide), too_wide
    account = allowed_pattern(member, "GovernanceAccountId")
    assert account.fullmatch("111111111111")
    assert not account.fullmatch("*") and not account.fullmatch("11111111111")
    organization = allowed_pattern(member, "OrganizationId")
    assert organization.fullmatch("o-a1b2c3d4e5")
    assert not organization.fullmatch("*")
    buckets = allowed_pattern(member, "ArtifactBucketPattern")
    assert buckets.fullmatch("sagemaker-*")
    assert not buckets.fullmatch("*")


def test_execution_role_is_created_once_per_account(member: dict) -> None:
    # RoleName is account-wide: a StackSet instance in a second Region would fail to create it again.
    assert member["Resources"]["GovernanceExecutionRole"]["Condition"] == "IsGovernanceRegion"
    assert member["Conditions"]["IsGovernanceRegion"] == {
        "Fn::Equals": [{"Ref": "GovernanceRegion"}, {"Ref": "AWS::Region"}]
    }


def test_execution_role_covers_what_the_backbone_does(member: dict) -> None:
    granted = {
        action
        for policy in member["Resources"]["GovernanceExecutionRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
    }
    needed = {
        # model promotion
        "sagemaker:DescribeModelPackage",
        "sagemaker:ListTags",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "kms:Decrypt",
        # remediation
        "s3:GetBucketPublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
        "s3:GetEncryptionConfiguration",
        "s3:PutEncryptionConfiguration",
        "s3:GetBucketPolicy",
        "s3:PutBucketPolicy",
        "s3:GetBucketTagging",
        "sagemaker:DescribeNotebookInstance",
        "sagemaker:StopNotebookInstance",
        "sagemaker:UpdateNotebookInstance",
        "sagemaker:AddTags",
        "sagemaker:DescribeEndpointConfig",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSecurityGroupRules",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupIngress",
        "cloudtrail:GetTrailStatus",
        "cloudtrail:DescribeTrails",
        "cloudtrail:StartLogging",
        "config:StartConfigRulesEvaluation",
        # account baseline
        "s3:GetAccountPublicAccessBlock",
        "s3:PutAccountPublicAccessBlock",
        "ec2:GetEbsEncryptionByDefault",
        "ec2:EnableEbsEncryptionByDefault",
        "iam:GetAccountPasswordPolicy",
        "iam:UpdateAccountPasswordPolicy",
        # forwarding watch
        "sqs:GetQueueUrl",
        "sqs:GetQueueAttributes",
        "cloudwatch:GetMetricStatistics",
    }
    assert granted == needed, {"missing": needed - granted, "not asked for": granted - needed}


def test_execution_role_stays_in_its_own_account(member: dict) -> None:
    """Every scoped resource names this account; S3 ARNs carry no account, so S3 needs aws:ResourceAccount."""
    for policy in member["Resources"]["GovernanceExecutionRole"]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            for resource in as_list(statement["Resource"]):
                if resource == "*":
                    continue
                arn = resource["Fn::Sub"]
                if arn.startswith("arn:${AWS::Partition}:s3:::"):
                    condition = statement["Condition"]["StringEquals"]["aws:ResourceAccount"]
                    assert condition == {"Ref": "AWS::AccountId"}, statement["Sid"]
                else:
                    assert ":${AWS::AccountId}:" in arn, (statement["Sid"], arn)


def test_kms_decrypt_only_through_s3(member: dict) -> None:
    policies = member["Resources"]["GovernanceExecutionRole"]["Properties"]["Policies"]
    decrypts = [
        s for p in policies for s in p["PolicyDocument"]["Statement"] if "kms:Decrypt" in as_list(s["Action"])
    ]
    assert len(decrypts) == 1
    assert decrypts[0]["Condition"] == {
        "StringLike": {"kms:ViaService": {"Fn::Sub": "s3.*.${AWS::URLSuffix}"}}
    }


# ---------------------------------------------------------------- least privilege, both templates


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_no_action_wildcards(path: Path) -> None:
    # A Deny only takes away, so a wildcard there is the safe direction (the queues' plain-HTTP refusal).
    statements = [s for s in policy_statements(load(path)) if s["Effect"] == "Allow"]
    assert statements
    offending = {s.get("Sid", "?"): wildcard_actions(s) for s in statements if wildcard_actions(s)}
    assert not offending


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_action_exists(path: Path) -> None:
    actions = [a for s in policy_statements(load(path)) for a in as_list(s.get("Action", []))]
    assert actions
    unknown = [
        a
        for a in actions
        if (service := IAM_ACTIONS.get(a.partition(":")[0].lower())) is None
        or (a.partition(":")[2] != "*" and a.partition(":")[2].lower() not in service.get("Actions", {}))
    ]
    assert not unknown


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_resource_star_only_without_resource_level_permissions(path: Path) -> None:
    for statement in policy_statements(load(path)):
        if "*" not in as_list(statement.get("Resource", [])):
            continue
        assert statement["Effect"] == "Allow"
        assert as_list(statement["Resource"]) == ["*"], statement.get("Sid")
        _, scopable = actions_without_resource_types(as_list(statement["Action"]))
        assert not scopable, f"{statement.get('Sid')}: {scopable} can be scoped to resources"
        assert 'Resource "*"' in comment_above(path, statement), f"{statement.get('Sid')}: say why"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_only_the_execution_role_trusts_anything_but_eventbridge(path: Path) -> None:
    template = load(path)
    for name, role in of_type(template, "AWS::IAM::Role").items():
        if name == "GovernanceExecutionRole":
            continue
        for trust in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            assert trust["Principal"] == {"Service": "events.amazonaws.com"}, name
            assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


# ---------------------------------------------------------------- forwarding rules


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_target_retries_dead_letters_and_uses_a_role(path: Path) -> None:
    template = load(path)
    rules = of_type(template, "AWS::Events::Rule")
    assert rules
    for name, rule in rules.items():
        targets = rule["Properties"]["Targets"]
        assert targets, name
        for target in targets:
            assert target["Arn"] == GOVERNANCE_BUS_ARN, name
            retry = target["RetryPolicy"]
            assert 0 < retry["MaximumRetryAttempts"] <= 185
            assert 60 <= retry["MaximumEventAgeInSeconds"] <= 86400
            queue = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"]
            assert template["Resources"][queue[0]]["Type"] == "AWS::SQS::Queue" and queue[1] == "Arn"
            role = target["RoleArn"]["Fn::GetAtt"]
            assert template["Resources"][role[0]]["Type"] == "AWS::IAM::Role" and role[1] == "Arn"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_forwarding_role_puts_events_on_exactly_the_governance_bus(path: Path) -> None:
    template = load(path)
    role_names = {
        t["RoleArn"]["Fn::GetAtt"][0]
        for rule in of_type(template, "AWS::Events::Rule").values()
        for t in rule["Properties"]["Targets"]
    }
    for role_name in role_names:
        statements = list(policy_statements(template["Resources"][role_name]["Properties"]["Policies"]))
        assert statements == [
            {"Effect": "Allow", "Action": "events:PutEvents", "Resource": GOVERNANCE_BUS_ARN}
        ]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_dead_letter_queues_are_encrypted_kept_14_days_and_fed_only_by_the_rules(path: Path) -> None:
    template = load(path)
    rules = of_type(template, "AWS::Events::Rule")
    queue_policies = of_type(template, "AWS::SQS::QueuePolicy").values()
    for queue_name, queue in of_type(template, "AWS::SQS::Queue").items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
        feeding_rules = sorted(
            name
            for name, rule in rules.items()
            for t in rule["Properties"]["Targets"]
            if t["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] == queue_name
        )
        [policy] = [p for p in queue_policies if p["Properties"]["Queues"] == [{"Ref": queue_name}]]
        # Besides this Allow, the policy only refuses plain HTTP (test_encryption_in_transit.py).
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert [s["Sid"] for s in statements if s["Effect"] == "Deny"] == ["DenyInsecureTransport"]
        [statement] = [s for s in statements if s["Effect"] == "Allow"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert as_list(statement["Action"]) == ["sqs:SendMessage"]
        assert statement["Resource"] == {"Fn::GetAtt": [queue_name, "Arn"]}
        source_arns = as_list(statement["Condition"]["ArnEquals"]["aws:SourceArn"])
        assert sorted(a["Fn::GetAtt"][0] for a in source_arns) == feeding_rules
        assert all(a["Fn::GetAtt"][1] == "Arn" for a in source_arns)


def test_the_backbone_can_read_the_forwarding_queue_depth_and_nothing_else(member: dict) -> None:
    """WatchForwardingFunction finds the queue by its name: the queue, the role's grant and the watcher
    must say the same name, and the role may read attributes, never the events."""
    from governance.forwarding import FORWARDING_DEAD_LETTER_QUEUE

    queue = member["Resources"]["ForwardingDeadLetterQueue"]
    assert queue["Properties"]["QueueName"] == FORWARDING_DEAD_LETTER_QUEUE
    # The update that named the queue replaces it: the old queue, and the events in it, must stay.
    assert queue["UpdateReplacePolicy"] == "Retain"
    sqs_statements = [
        statement
        for policy in member["Resources"]["GovernanceExecutionRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if any(action.startswith("sqs:") for action in as_list(statement["Action"]))
    ]
    assert sqs_statements == [
        {
            "Sid": "ReadForwardingDeadLetterQueueDepth",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
            "Resource": {
                "Fn::Sub": f"arn:${{AWS::Partition}}:sqs:*:${{AWS::AccountId}}:{FORWARDING_DEAD_LETTER_QUEUE}"
            },
        }
    ]


def test_the_backbone_reads_the_lost_events_of_exactly_the_member_forwarding_rules(member: dict) -> None:
    """InvocationsFailedToBeSentToDlq of a default-bus rule has the dimension RuleName alone: the watcher
    asks for each forwarding rule by its name, so the names must be the template's (every rule with a
    dead-letter queue), and the role may read CloudWatch statistics and nothing else there."""
    from governance.forwarding import FORWARDING_RULES

    rules = rules_with_dead_letter_queues(member)
    assert set(rules) == {"ForwardModelPackageStateChangeRule", "ForwardConfigComplianceChangeRule"}
    assert sorted(member["Resources"][rule]["Properties"]["Name"] for rule in rules) == sorted(
        FORWARDING_RULES
    )
    assert set(rules.values()) == {"default"}
    cloudwatch = [
        statement
        for policy in member["Resources"]["GovernanceExecutionRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if any(action.startswith("cloudwatch:") for action in as_list(statement["Action"]))
    ]
    assert [(s["Sid"], s["Action"], s["Resource"]) for s in cloudwatch] == [
        ("ReadForwardingRulesLostEvents", "cloudwatch:GetMetricStatistics", "*")
    ]


def test_the_management_account_alarms_on_its_own_forwarding_queue(management: dict) -> None:
    """The backbone never acts in the management account, so no watcher reads this queue: one message in
    it must alarm there, to a topic CloudWatch of that account may publish to."""
    queue = {"Fn::GetAtt": ["ForwardingDeadLetterQueue", "QueueName"]}
    [name] = alarms_on(management, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue)
    assert sorted(of_type(management, "AWS::CloudWatch::Alarm")) == sorted(
        [name, "ForwardingEventsLostAlarm"]
    )
    topic = {"Ref": "ForwardingAlarmTopic"}
    for alarm in of_type(management, "AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == alarm["Properties"]["OKActions"] == [topic]
    [policy] = of_type(management, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [topic]
    allowed = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allowed == [
        {
            "Sid": "CloudWatchAlarmsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic,
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }
    ]
    subscription = management["Resources"]["ForwardingAlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmNotificationEmail"}
    email = allowed_pattern(management, "AlarmNotificationEmail")
    assert email.fullmatch("") and email.fullmatch("platform@example.com")
    assert not email.fullmatch("not an address")


def test_the_management_account_alarms_on_an_event_its_forwarding_rules_could_not_even_dead_letter(
    management: dict,
) -> None:
    """InvocationsFailedToBeSentToDlq: the bus refused the event and so did the dead-letter queue (its
    policy, its key). Nothing in any queue shows it; only this metric, per rule, does."""
    assert set(rules_with_dead_letter_queues(management)) == {
        "ForwardControlTowerLifecycleRule",
        "ForwardOrganizationsAccountCallsRule",
    }
    assert rules_losing_events_unseen(management) == []
    for query in ("controlTower", "organizations"):
        mutated = copy.deepcopy(management)
        alarm = mutated["Resources"]["ForwardingEventsLostAlarm"]["Properties"]
        alarm["Metrics"] = [q for q in alarm["Metrics"] if q["Id"] != query]
        assert len(rules_losing_events_unseen(mutated)) == 1, query
    mutated = copy.deepcopy(management)
    mutated["Resources"]["ForwardingEventsLostAlarm"]["Properties"]["Metrics"][0]["ReturnData"] = False
    assert len(rules_losing_events_unseen(mutated)) == 2


# Real-shaped events, trimmed to the fields that matter for matching.
MODEL_PACKAGE_APPROVED = {
    "source": "aws.sagemaker",
    "detail-type": "SageMaker Model Package State Change",
    "account": "222222222222",
    "region": "eu-west-1",
    "resources": ["arn:aws:sagemaker:eu-west-1:222222222222:model-package/churn/3"],
    "detail": {
        "ModelPackageGroupName": "churn",
        "ModelPackageVersion": 3,
        "ModelPackageArn": "arn:aws:sagemaker:eu-west-1:222222222222:model-package/churn/3",
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": "Approved",
    },
}
CONFIG_NON_COMPLIANT = {
    "source": "aws.config",
    "detail-type": "Config Rules Compliance Change",
    "account": "222222222222",
    "region": "eu-west-1",
    "detail": {
        "resourceId": "team-a-data",
        "resourceType": "AWS::S3::Bucket",
        "awsAccountId": "222222222222",
        "configRuleName": "s3-bucket-public-read-prohibited",
        "configRuleARN": "arn:aws:config:eu-west-1:222222222222:config-rule/config-rule-abc123",
        "messageType": "ComplianceChangeNotification",
        "newEvaluationResult": {"complianceType": "NON_COMPLIANT"},
    },
}
ACCOUNT_CREATED = {
    "source": "aws.controltower",
    "detail-type": "AWS Service Event via CloudTrail",
    "account": "999999999999",
    "region": "eu-west-1",
    "detail": {
        "eventSource": "controltower.amazonaws.com",
        "eventName": "CreateManagedAccount",
        "serviceEventDetails": {
            "createManagedAccountStatus": {
                "account": {"accountName": "ml-team-a-dev", "accountId": "222222222222"},
                "state": "SUCCEEDED",
            }
        },
    },
}


ACCOUNT_CLOSED = {
    "source": "aws.organizations",
    "detail-type": "AWS API Call via CloudTrail",
    "account": "999999999999",
    "region": "us-east-1",
    "detail": {
        "eventSource": "organizations.amazonaws.com",
        "eventName": "CloseAccount",
        "requestParameters": {"accountId": "222222222222"},
    },
}


def with_detail(event: dict[str, Any], **detail: Any) -> dict[str, Any]:
    return {**event, "detail": {**event["detail"], **detail}}


def matching_rules(template: dict[str, Any], event: dict[str, Any]) -> list[str]:
    """The rules whose pattern matches, by moto's EventBridge pattern engine (the one the runtime uses)."""
    matched = []
    for name, rule in of_type(template, "AWS::Events::Rule").items():
        # Any: moto types events as its own TypedDict; these are plain event dicts.
        engine: Any = EventPattern.load(json.dumps(rule["Properties"]["EventPattern"]))
        if engine.matches_event(event):
            matched.append(name)
    return sorted(matched)


def test_member_rules_forward_model_package_and_compliance_changes(member: dict) -> None:
    model_rule, config_rule = ["ForwardModelPackageStateChangeRule"], ["ForwardConfigComplianceChangeRule"]
    for status in ["Approved", "Rejected", "PendingManualApproval"]:
        assert (
            matching_rules(member, with_detail(MODEL_PACKAGE_APPROVED, ModelApprovalStatus=status))
            == model_rule
        )
    without_status = {**MODEL_PACKAGE_APPROVED, "detail": {"ModelPackageStatus": "InProgress"}}
    assert matching_rules(member, without_status) == []
    assert matching_rules(member, CONFIG_NON_COMPLIANT) == config_rule
    compliant = with_detail(CONFIG_NON_COMPLIANT, newEvaluationResult={"complianceType": "COMPLIANT"})
    assert matching_rules(member, compliant) == config_rule
    other_message = with_detail(CONFIG_NON_COMPLIANT, messageType="ConfigurationItemChangeNotification")
    assert matching_rules(member, other_message) == []
    assert matching_rules(member, ACCOUNT_CREATED) == []
    for rule in of_type(member, "AWS::Events::Rule").values():
        assert rule["Properties"]["EventBusName"] == "default"
        assert rule["Properties"]["State"] == "ENABLED"


def test_management_rule_forwards_control_tower_account_lifecycle(management: dict) -> None:
    rule = ["ForwardControlTowerLifecycleRule"]
    assert matching_rules(management, ACCOUNT_CREATED) == rule
    assert matching_rules(management, with_detail(ACCOUNT_CREATED, eventName="UpdateManagedAccount")) == rule
    failed = with_detail(
        ACCOUNT_CREATED,
        serviceEventDetails={"createManagedAccountStatus": {"state": "FAILED", "message": "quota"}},
    )
    assert matching_rules(management, failed) == rule
    for other in ["SetupLandingZone", "RegisterOrganizationalUnit", "EnableGuardrail"]:
        assert matching_rules(management, with_detail(ACCOUNT_CREATED, eventName=other)) == []
    assert matching_rules(management, MODEL_PACKAGE_APPROVED) == []
    # The backbone never acts in the management account: no role there but EventBridge's.
    assert list(of_type(management, "AWS::IAM::Role")) == ["ForwardingRole"]


def test_management_rule_forwards_organizations_calls_that_end_an_account(management: dict) -> None:
    rule = ["ForwardOrganizationsAccountCallsRule"]
    assert matching_rules(management, ACCOUNT_CLOSED) == rule
    assert (
        matching_rules(management, with_detail(ACCOUNT_CLOSED, eventName="RemoveAccountFromOrganization"))
        == rule
    )
    # A refused call changed nothing; other Organizations calls are not the backbone's business.
    assert matching_rules(management, with_detail(ACCOUNT_CLOSED, errorCode="AccessDenied")) == []
    for other in ["MoveAccount", "CreateAccount", "LeaveOrganization", "DescribeAccount"]:
        assert matching_rules(management, with_detail(ACCOUNT_CLOSED, eventName=other)) == []
    assert matching_rules(management, {**ACCOUNT_CLOSED, "source": "aws.controltower"}) == []


def test_the_forwarder_sends_every_organizations_call_the_bus_routes_and_no_other(management: dict) -> None:
    """The two ends of one path: a call the bus would act on that the forwarder drops never arrives, and a
    call forwarded for nothing costs a cross-account event."""
    [bus_event] = [
        event["Properties"]["Pattern"]
        for event in load(ROOT / "template.yaml")["Resources"]["AccountBaselineStateMachine"]["Properties"][
            "Events"
        ].values()
        if event["Properties"]["Pattern"]["source"] == ["aws.organizations"]
    ]
    forwarded = management["Resources"]["ForwardOrganizationsAccountCallsRule"]["Properties"]["EventPattern"]
    assert forwarded["detail"] == bus_event["detail"]
    assert (forwarded["source"], forwarded["detail-type"]) == (bus_event["source"], bus_event["detail-type"])


# ---------------------------------------------------------------- linters


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_is_clean(path: Path) -> None:
    # Errors and warnings, in two Regions (resource and property availability differs by Region).
    matches = lint_file(path, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches] == []


def sam_binary() -> str:
    venv_sam = ROOT / ".venv" / "bin" / "sam"
    found = str(venv_sam) if venv_sam.exists() else shutil.which("sam")
    if not found:
        pytest.skip("SAM CLI is not installed (pip install -e '.[dev]')")
    return found


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_sam_validate_lint(path: Path) -> None:
    result = subprocess.run(
        [sam_binary(), "validate", "--lint", "-t", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout
