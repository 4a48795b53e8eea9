"""Runtime support of Config remediation: seed the non-compliant resource and its rule, verify the fixes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from unittest import mock

import boto3
from botocore.exceptions import ClientError

from governance.ledger import LedgerEntry
from governance.remediation.controls import ACTIONS, IngressParameters, regional_client
from governance.remediation.policy import PolicyError, base_rule_names, current_policy

if TYPE_CHECKING:
    from govern.emulator import Organization

# The team trail the sample CloudTrail event is about (the event names the account, not the trail).
TEAM_TRAIL = "org-team-trail"
# A workload rule every seeded security group also has: remediation must leave it in place.
INTERNAL_CIDR = "10.0.0.0/16"
# A world-open port range every seeded security group also has, holding the workload's web ports.
WEB_RANGE = (0, 1024)
WEB_RANGE_DESCRIPTION = "team web tier"
EMULATION_ROLE = "arn:aws:iam::{account}:role/service-role/emulated-sagemaker-execution"

# Managed rules whose identifier is not their name in upper snake case.
_SOURCE_IDENTIFIERS = {
    "restricted-ssh": "INCOMING_SSH_DISABLED",
    "restricted-common-ports": "RESTRICTED_INCOMING_TRAFFIC",
    "cloudtrail-enabled": "CLOUD_TRAIL_ENABLED",
}


def handles(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.config"


def _detail(event: dict[str, Any]) -> dict[str, Any] | None:
    """The fields seeding needs, or None for an event too broken to refer to anything (dead-lettered)."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return None
    needed = ("resourceId", "resourceType", "configRuleName", "awsAccountId", "awsRegion")
    if not all(isinstance(detail.get(key), str) and detail.get(key) for key in needed):
        return None
    compliance = (detail.get("newEvaluationResult") or {}).get("complianceType")
    return detail if compliance == "NON_COMPLIANT" else None


def seed(event: dict[str, Any], org: Organization) -> None:
    """The Config rule and the resource in its non-compliant state; an existing resource is left as it is,
    so a redelivery finds what the first delivery did."""
    detail = _detail(event)
    if detail is None:
        return
    account, region = detail["awsAccountId"], detail["awsRegion"]
    session = org.session(account, region)
    _seed_rule(session, region, detail["configRuleName"])
    try:
        control = current_policy().control_for(detail["configRuleName"])
    except PolicyError:
        control = None  # the function reports the unusable policy; seeding only needs a plausible state
    action = control.action if control else "none"
    parameters = control.parameters if control else {}
    seeders: dict[str, Callable[[boto3.Session, str, str, str, dict[str, Any]], None]] = {
        "AWS::S3::Bucket": _seed_bucket,
        "AWS::SageMaker::NotebookInstance": _seed_notebook,
        "AWS::SageMaker::EndpointConfig": _seed_endpoint_config,
        "AWS::EC2::SecurityGroup": _seed_security_group,
        "AWS::::Account": _seed_account,
    }
    seeder = seeders.get(detail["resourceType"])
    if seeder:
        seeder(session, region, detail["resourceId"], action, {**parameters, "account": account})


def _seed_rule(session: boto3.Session, region: str, rule_name: str) -> None:
    from moto.config.models import MANAGED_RULES_CONSTRAINTS

    base = base_rule_names(rule_name)[-1]
    identifier = _SOURCE_IDENTIFIERS.get(base, base.upper().replace("-", "_"))
    rule: dict[str, Any] = {
        "ConfigRuleName": rule_name,
        "Source": {"Owner": "AWS", "SourceIdentifier": identifier},
    }
    if identifier not in MANAGED_RULES_CONSTRAINTS:
        # A team's custom rule runs its own Lambda function; the emulation stands in a managed rule for it.
        rule["Source"]["SourceIdentifier"] = "REQUIRED_TAGS"
        rule["InputParameters"] = json.dumps({"tag1Key": "cost-center", "tag2Key": "data-classification"})
        rule["Description"] = f"emulated stand-in for the custom rule {rule_name}"
    regional_client(session, "config", region).put_config_rule(ConfigRule=rule)


def create_bucket(s3: Any, bucket: str, region: str) -> bool:
    """Create `bucket` in `region`; False when it already exists (it is left as it is)."""
    with contextlib.suppress(ClientError):
        # In us-east-1 S3 answers a repeated CreateBucket of one's own bucket with success: look first.
        s3.head_bucket(Bucket=bucket)
        return False
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)  # us-east-1 refuses its own name as a LocationConstraint
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    return True


def _seed_bucket(
    session: boto3.Session, region: str, bucket: str, action: str, parameters: dict[str, Any]
) -> None:
    s3 = regional_client(session, "s3", region)
    if not create_bucket(s3, bucket, region):
        return
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "churn"}]})
    workload_statement = {
        "Sid": "TeamRoleReadsData",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{parameters['account']}:root"},
        "Action": ["s3:GetObject"],
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    if action == "block_bucket_public_access":
        # Public both ways: a public-read ACL and a policy statement granting everyone GetObject.
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
        public = {**workload_statement, "Sid": "PublicRead", "Principal": "*"}
        s3.put_bucket_policy(
            Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [public]})
        )
    elif action in ("require_tls_for_bucket", "enable_bucket_default_encryption"):
        # A policy the team wrote: the TLS fix must keep it, and encryption must not touch it.
        s3.put_bucket_policy(
            Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [workload_statement]})
        )
    # moto creates buckets without default encryption, the non-compliant state of the encryption rule.


def _seed_notebook(
    session: boto3.Session, region: str, name: str, action: str, parameters: dict[str, Any]
) -> None:
    sagemaker = regional_client(session, "sagemaker", region)
    with contextlib.suppress(ClientError):
        sagemaker.describe_notebook_instance(NotebookInstanceName=name)
        return
    sagemaker.create_notebook_instance(
        NotebookInstanceName=name,
        InstanceType="ml.t3.medium",
        RoleArn=EMULATION_ROLE.format(account=parameters["account"]),
        DirectInternetAccess="Enabled",
        RootAccess="Enabled",
        Tags=[{"Key": "team", "Value": "churn"}],
    )


def _seed_endpoint_config(
    session: boto3.Session, region: str, name: str, action: str, parameters: dict[str, Any]
) -> None:
    sagemaker = regional_client(session, "sagemaker", region)
    with contextlib.suppress(ClientError):
        sagemaker.describe_endpoint_config(EndpointConfigName=name)
        return
    model = f"{name}-model"[:63]
    with contextlib.suppress(ClientError):
        sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn=EMULATION_ROLE.format(account=parameters["account"]),
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:latest"},
        )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
            }
        ],
    )


def _seed_security_group(
    session: boto3.Session, region: str, group_id: str, action: str, parameters: dict[str, Any]
) -> None:
    ec2 = regional_client(session, "ec2", region)
    with contextlib.suppress(ClientError):
        ec2.describe_security_groups(GroupIds=[group_id])
        return
    # moto draws security group ids at random; the event names one, so the emulation hands that id out.
    with mock.patch("moto.ec2.models.security_groups.random_security_group_id", return_value=group_id):
        ec2.create_security_group(GroupName=f"team-{group_id}", Description="team workload security group")
    rules = (
        IngressParameters.model_validate({k: v for k, v in parameters.items() if k != "account"})
        if (action == "revoke_open_ingress")
        else IngressParameters(blocked_tcp_ports=["22"])
    )
    forbidden = int((rules.blocked_tcp_ports or ["8080"])[0].split("-")[0])
    allowed = 443 if not rules.forbids("tcp", 443, 443) else 8443
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": forbidden,
                "ToPort": forbidden,
                # The world-open ranges the control revokes, and the same port from inside, which stays.
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}, {"CidrIp": INTERNAL_CIDR, "Description": "team VPC"}],
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
            {
                "IpProtocol": "tcp",
                "FromPort": allowed,
                "ToPort": allowed,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
            {
                # A wide world-open range over the forbidden port of restricted-ssh and over ports
                # vpc-sg-open-only-to-authorized-ports does not authorize: narrowed, not revoked whole,
                # since the workload's web ports in it must stay open.
                "IpProtocol": "tcp",
                "FromPort": WEB_RANGE[0],
                "ToPort": WEB_RANGE[1],
                "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": WEB_RANGE_DESCRIPTION}],
            },
        ],
    )


def _seed_account(
    session: boto3.Session, region: str, account: str, action: str, parameters: dict[str, Any]
) -> None:
    # EBS encryption by default starts off in moto: already the non-compliant state.
    if action != "start_trail_logging":
        return
    cloudtrail = regional_client(session, "cloudtrail", region)
    if any(trail["Name"] == TEAM_TRAIL for trail in cloudtrail.describe_trails()["trailList"]):
        return
    bucket = f"{TEAM_TRAIL}-logs-{account}"
    create_bucket(regional_client(session, "s3", region), bucket, region)
    # A new trail does not log until StartLogging: the "stopped" state of the event.
    cloudtrail.create_trail(Name=TEAM_TRAIL, S3BucketName=bucket)


def verify_remediation(entry: LedgerEntry, org: Organization) -> bool:
    """Read the member account back: fixed after `done`; left as it was after dry-run, exempt, notify-only;
    contained (what the action did, not a fix) after a notify-only containment."""
    detail = entry.detail
    action = ACTIONS.get(str(detail.get("action")))
    status = str(detail.get("first_status")) if entry.status == "skipped" else entry.status
    if action is None:
        return status in ("notify-only", "exempt")  # nothing to act on, nothing to read back
    region = str(detail["region"])
    changes = detail.get("changes") or {}
    fixed = action.verify(
        org.session(entry.account, region),
        region,
        str(detail["resource_id"]),
        detail["parameters"],
        finding=str(detail.get("rule") or ""),
        changes=changes,
    )
    # Notify-only because the action found the resource already as the control wants it (it still is), or
    # because it could only contain the finding (the containment holds).
    acted = changes.get("changed") is False or bool(changes.get("contained"))
    return fixed if status == "done" or acted else not fixed


VERIFIERS: dict[str, Callable[[LedgerEntry, Organization], bool]] = {"remediate": verify_remediation}
