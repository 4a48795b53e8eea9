"""Every AWS call the backbone makes is one its IAM role grants.

moto does not enforce IAM: a call added without its permission passes every other test and fails on AWS
with AccessDenied. Here the sample events (and the paths they do not reach: an artifact copy, a prod
account's baseline, the hourly cap, the forwarding watch) run through the emulation while every call is
recorded by function and by role: the function's own role, or GovernanceExecutionRole in a member account.
Each call's IAM action must be granted by template.yaml (the function's Policies) or by
templates/member-account.yaml (GovernanceExecutionRole). Actions are compared, not resources or conditions;
test_iam_least_privilege.py checks those for what is granted. The KMS permissions that S3, SNS, SQS and
DynamoDB use on the caller's behalf make no call of their own and are not seen here; nor is the
sts:AssumeRole into GovernanceExecutionRole (a client of its own), whose trust test_member_templates.py
checks."""

from __future__ import annotations

import contextvars
import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import governance.sessions as sessions
from govern.emulator import Organization
from tests.conftest import EVENTS_DIR, read_event
from tests.template.templates import ROOT, load_plain
from tests.template.test_iam_least_privilege import IAM_ACTIONS, as_list, sam_policy_statements, statements_of

MEMBER_TEMPLATE = ROOT / "templates" / "member-account.yaml"
MEMBER_ROLE = "GovernanceExecutionRole"
# Operations whose IAM action is not <signing name>:<operation> (Service Authorization Reference).
IAM_ACTION_OF = {
    ("s3", "GetBucketEncryption"): "s3:GetEncryptionConfiguration",
    ("s3", "PutBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("s3", "GetPublicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("s3", "PutPublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3control", "GetPublicAccessBlock"): "s3:GetAccountPublicAccessBlock",
    ("s3control", "PutPublicAccessBlock"): "s3:PutAccountPublicAccessBlock",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}
# Where an API's signing name is not its IAM prefix.
IAM_PREFIX_OF = {"monitoring": "cloudwatch"}
# Reading one version of an object is its own action.
VERSIONED = {"s3:GetObject": "s3:GetObjectVersion", "s3:GetObjectTagging": "s3:GetObjectVersionTagging"}


@dataclass(frozen=True)
class Call:
    function: str  # logical id in template.yaml
    role: str  # "own" (the function's role) or MEMBER_ROLE
    action: str  # the IAM action


def iam_action(service: str, signing_name: str, operation: str, request: Any) -> str:
    action = IAM_ACTION_OF.get(
        (service, operation), f"{IAM_PREFIX_OF.get(signing_name, signing_name)}:{operation}"
    )
    query = request.get("query_string") if isinstance(request, dict) else None
    if isinstance(query, dict) and "versionId" in query:
        action = VERSIONED.get(action, action)
    return action


_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("function", default=None)


@pytest.fixture(scope="module")
def calls() -> Iterator[set[Call]]:
    """Run the scenarios once with the recorder in place; the calls each function made, by role."""
    recorded: set[Call] = set()
    patch = pytest.MonkeyPatch()
    original_init = sessions.ClientCachingSession.__init__

    def recording_init(self: sessions.ClientCachingSession, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        # Sessions with keys of their own are GovernanceExecutionRole's (governance.sessions._assume).
        role = MEMBER_ROLE if kwargs.get("aws_access_key_id") else "own"

        def record(model: Any, params: Any = None, **_: Any) -> None:
            function = _function.get()
            if function:  # not the emulation's own seeding and checking
                service = model.service_model
                action = iam_action(service.service_name, service.signing_name, model.name, params)
                recorded.add(Call(function, role, action))

        self.events.register("before-call.*.*", record)

    original_invoke = Organization._invoke

    def invoke_as(self: Organization, function: Any, payload: Any) -> Any:
        token = _function.set(function.logical_id)
        try:
            return original_invoke(self, function, payload)
        finally:
            _function.reset(token)

    original_start = threading.Thread.start

    def start_in_context(self: threading.Thread) -> None:
        # A handler's worker threads (the artifact copy's transfers) call on its behalf.
        context, run = contextvars.copy_context(), self.run
        self.run = lambda: context.run(run)  # type: ignore[method-assign]
        original_start(self)

    patch.setattr(sessions.ClientCachingSession, "__init__", recording_init)
    patch.setattr(Organization, "_invoke", invoke_as)
    patch.setattr(threading.Thread, "start", start_in_context)
    try:
        run_scenarios()
        yield recorded
    finally:
        patch.undo()


def run_scenarios() -> None:
    samples = [
        read_event(path.name)
        for path in sorted(EVENTS_DIR.glob("*.json"))
        if path.name != "expected-outcomes.json"
    ]
    with Organization() as org:
        org.replay(samples)
        org.run_scheduled("WatchForwardingFunction")
    # The central approval above makes the team version's promotion find its copy: alone, it copies.
    prod = read_event("account-created")
    status = prod["detail"]["serviceEventDetails"]["createManagedAccountStatus"]
    status["organizationalUnit"]["organizationalUnitName"] = "ML-Prod"  # prod adds the password policy
    team_approval = read_event("model-approved-in-team-account")
    with Organization() as org:
        org.seed(team_approval)
        version_the_artifacts(org, team_approval)
        org.replay([team_approval, prod])
    # Past the hourly cap the function asks SQS to hold the evaluation until the hour turns.
    with Organization() as org:
        org.configure(MAX_ACTIONS_PER_ACCOUNT_PER_HOUR="1")
        first, second = (read_event(name) for name in ("config-s3-public-read", "config-s3-tls-required"))
        org.replay([first, second])


def version_the_artifacts(org: Organization, approval: dict[str, Any]) -> None:
    """Turn versioning on for the team's artifact bucket and write each artifact again, as most team
    buckets are: the copy then reads the exact version it looked at (s3:GetObjectVersion)."""
    account, region = approval["account"], approval["region"]
    sagemaker = org.session(account, region).client("sagemaker")
    package = sagemaker.describe_model_package(ModelPackageName=approval["detail"]["ModelPackageArn"])
    s3 = org.session(account, region).client("s3")
    for container in package["InferenceSpecification"]["Containers"]:
        bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, MetadataDirective="REPLACE"
        )


def granted_to_functions(template: dict[str, Any]) -> dict[str, set[str]]:
    """The actions each function's Policies grant: SAM policy templates, inline statements, and the
    template's own managed policies they attach."""
    resources = template["Resources"]
    managed = {lid for lid, r in resources.items() if r["Type"] == "AWS::IAM::ManagedPolicy"}
    granted: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        actions: set[str] = set()
        for item in as_list(resource["Properties"].get("Policies", [])):
            if isinstance(item, dict) and item.get("Ref") in managed:
                document = resources[item["Ref"]]["Properties"]["PolicyDocument"]
                statements = list(statements_of(document, logical_id))
            else:
                statements = list(sam_policy_statements(item, logical_id, managed))
            actions |= {
                action
                for statement in statements
                if statement.body.get("Effect") == "Allow"
                for action in as_list(statement.body.get("Action", []))
            }
        granted[logical_id] = actions
    return granted


def granted_to_member_role(member: dict[str, Any]) -> set[str]:
    return {
        action
        for policy in member["Resources"][MEMBER_ROLE]["Properties"]["Policies"]
        for statement in statements_of(policy["PolicyDocument"], MEMBER_ROLE)
        if statement.body.get("Effect") == "Allow"
        for action in as_list(statement.body.get("Action", []))
    }


def ungranted(calls: set[Call], template: dict[str, Any], member: dict[str, Any]) -> list[str]:
    functions = granted_to_functions(template)
    member_role = granted_to_member_role(member)
    return sorted(
        f"{call.function} as {call.role}: {call.action}"
        for call in calls
        if call.action
        not in (member_role if call.role == MEMBER_ROLE else functions.get(call.function, set()))
    )


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_plain()


@pytest.fixture(scope="module")
def member() -> dict[str, Any]:
    return load_plain(MEMBER_TEMPLATE)


def test_every_call_the_functions_make_is_granted_to_the_role_that_makes_it(
    calls: set[Call], template: dict[str, Any], member: dict[str, Any]
) -> None:
    assert ungranted(calls, template, member) == []


# What GovernanceExecutionRole may grant beyond the calls recorded here, and why. The role can act in every
# ML account: anything else it grants is a permission nothing uses.
MEMBER_GRANTS_WITHOUT_A_CALL = {
    # A missing object then reads as 404, not as a 403 that looks like a permission problem.
    "s3:ListBucket": "the artifact copy's HeadObject",
    # S3 decrypts SSE-KMS artifacts with the caller's permission (kms:ViaService); no call of ours.
    "kms:Decrypt": "SSE-KMS model artifacts",
}


def test_the_member_role_grants_only_what_the_backbone_calls(
    calls: set[Call], member: dict[str, Any]
) -> None:
    called = {call.action for call in calls if call.role == MEMBER_ROLE}
    assert granted_to_member_role(member) - called == set(MEMBER_GRANTS_WITHOUT_A_CALL)


def may_assume_the_member_role(template: dict[str, Any]) -> set[str]:
    return {
        function
        for function, resource in template["Resources"].items()
        if {"Ref": "AssumeMemberAccountRolePolicy"} in (resource.get("Properties") or {}).get("Policies", [])
    }


def test_exactly_the_functions_that_act_in_member_accounts_may_assume_the_member_role(
    calls: set[Call], template: dict[str, Any]
) -> None:
    """The member role can change buckets, security groups and password policies in every ML account: a
    function that never acts there (DeployModelFunction, RecordFailureFunction) must not be able to."""
    acting = {call.function for call in calls if call.role == MEMBER_ROLE}
    assert acting == {
        "RemediateConfigFunction",
        "PromoteModelFunction",
        "BaselineAccountFunction",
        "WatchForwardingFunction",
    }
    assert may_assume_the_member_role(template) == acting


def test_the_recording_saw_every_function_and_both_roles(calls: set[Call], template: dict[str, Any]) -> None:
    # If the recorder missed calls, the test above would pass on nothing.
    assert {call.function for call in calls} == set(granted_to_functions(template))
    seen = {(call.role, call.action) for call in calls}
    assert {
        (MEMBER_ROLE, "s3:GetObjectVersion"),  # the artifact copy pins the version it looked at
        (MEMBER_ROLE, "s3:PutBucketPublicAccessBlock"),
        (MEMBER_ROLE, "ec2:RevokeSecurityGroupIngress"),
        (MEMBER_ROLE, "ec2:AuthorizeSecurityGroupIngress"),  # a wide world-open range narrowed
        (MEMBER_ROLE, "iam:UpdateAccountPasswordPolicy"),
        (MEMBER_ROLE, "sqs:GetQueueAttributes"),
        ("own", "sqs:ChangeMessageVisibility"),
        ("own", "s3:PutObject"),
        ("own", "codepipeline:StartPipelineExecution"),
        ("own", "sns:Publish"),
    } <= seen


def test_every_recorded_action_is_a_real_iam_action(calls: set[Call]) -> None:
    # A wrong name in IAM_ACTION_OF would compare against nothing; the Service Authorization Reference
    # (as cfn-lint ships it) knows every action.
    known = {
        f"{service}:{action}".lower()
        for service, details in IAM_ACTIONS.items()
        if isinstance(details, dict)
        for action in details.get("Actions", {})
    }
    assert known, "the action table is empty"
    assert sorted(call.action for call in calls if call.action.lower() not in known) == []


@pytest.mark.parametrize(
    ("mutate", "caught"),
    [
        (
            lambda t, m: remove_action(
                m["Resources"][MEMBER_ROLE]["Properties"], "sagemaker:StopNotebookInstance"
            ),
            f"RemediateConfigFunction as {MEMBER_ROLE}: sagemaker:StopNotebookInstance",
        ),
        (
            lambda t, m: remove_action(
                t["Resources"]["RemediateConfigFunction"]["Properties"], "sqs:ChangeMessageVisibility"
            ),
            "RemediateConfigFunction as own: sqs:ChangeMessageVisibility",
        ),
    ],
    ids=["member-role", "function-role"],
)
def test_a_permission_taken_away_is_caught(
    calls: set[Call], template: dict[str, Any], member: dict[str, Any], mutate: Any, caught: str
) -> None:
    template, member = copy.deepcopy(template), copy.deepcopy(member)
    mutate(template, member)
    assert ungranted(calls, template, member) == [caught]


def remove_action(node: Any, action: str) -> None:
    """Take `action` out of every Action list under `node` (a policy document, a resource's Properties)."""
    if isinstance(node, dict):
        if node.get("Action") == action:
            node["Action"] = []
        elif isinstance(node.get("Action"), list) and action in node["Action"]:
            node["Action"] = [a for a in node["Action"] if a != action]
        for value in node.values():
            remove_action(value, action)
    elif isinstance(node, list):
        for item in node:
            remove_action(item, action)


# ---------------------------------------------------------------- the workflows' own roles


def invoked_functions(template: dict[str, Any], machine: str) -> set[str]:
    """The functions a state machine's tasks invoke (arn:${Partition}:states:::lambda:invoke), by id."""
    properties = template["Resources"][machine]["Properties"]
    definition = json.loads((ROOT / properties["DefinitionUri"]).read_text(encoding="utf-8"))
    substitutions = properties.get("DefinitionSubstitutions", {})
    invoked: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("Type") == "Task" and str(node.get("Resource", "")).startswith(
                "arn:${Partition}:states:::lambda:"
            ):
                placeholder = node["Parameters"]["FunctionName"]
                target = substitutions[placeholder.removeprefix("${").removesuffix("}")]
                invoked.add(target["Fn::GetAtt"][0] if "Fn::GetAtt" in target else target["Ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(definition)
    return invoked


def invoke_grants(template: dict[str, Any], machine: str) -> set[str]:
    return {
        item["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for item in as_list(template["Resources"][machine]["Properties"].get("Policies", []))
        if isinstance(item, dict) and "LambdaInvokePolicy" in item
    }


def test_every_workflow_may_invoke_exactly_the_functions_its_tasks_invoke(template: dict[str, Any]) -> None:
    machines = [
        lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::StateMachine"
    ]
    assert len(machines) == 3
    for machine in machines:
        invoked = invoked_functions(template, machine)
        assert "RecordFailureFunction" in invoked, machine
        assert invoke_grants(template, machine) == invoked, machine


def test_a_workflow_missing_an_invoke_grant_is_caught(template: dict[str, Any]) -> None:
    mutated = copy.deepcopy(template)
    properties = mutated["Resources"]["ModelPromotionStateMachine"]["Properties"]
    properties["Policies"] = [
        item
        for item in properties["Policies"]
        if item != {"LambdaInvokePolicy": {"FunctionName": {"Ref": "RecordFailureFunction"}}}
    ]
    machine = "ModelPromotionStateMachine"
    assert invoked_functions(mutated, machine) - invoke_grants(mutated, machine) == {"RecordFailureFunction"}


def test_every_task_names_its_service_integration_in_the_partition_of_the_stack(
    template: dict[str, Any],
) -> None:
    # arn:aws:states:::lambda:invoke does not exist in China or AWS GovCloud (US): the partition is
    # substituted.
    machines = [
        lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::StateMachine"
    ]
    for machine in machines:
        properties = template["Resources"][machine]["Properties"]
        assert properties["DefinitionSubstitutions"]["Partition"] == {"Ref": "AWS::Partition"}, machine
        text = (ROOT / properties["DefinitionUri"]).read_text(encoding="utf-8")
        assert "arn:aws:" not in text, machine
        assert len(invoked_functions(template, machine)) >= 2, machine
