"""The remediation actions: each changes one resource in a member account and reads it back to verify."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from governance.errors import is_transient
from governance.tagging import sagemaker_tags

# The action name of a control that changes nothing (the policy's notify-only entries).
NO_ACTION = "none"

WORLD_CIDRS = ("0.0.0.0/0", "::/0")
FINDING_TAG = "governance:finding"
STOPPED_AT_TAG = "governance:stopped-at"
TLS_STATEMENT_SID = "DenyInsecureTransport"
PUBLIC_ACCESS_BLOCK_SETTINGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


class RemediationFailed(RuntimeError):
    """The action cannot fix this resource; retrying will not help. The message says why, in one line."""


class RemediationNotReady(RuntimeError):
    """The resource is in a transition the action must wait out (a notebook still starting); retry later."""


class _NoParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Remediate = Callable[[boto3.Session, str, str, Any, str], dict[str, Any]]
# The last two arguments: the rule of the finding (some actions fix one rule and only contain
# another), and what remediate returned ({} when there was no fix, as in a dry run): an action whose
# fix depends on what it found (the ports a narrowed rule keeps) reads that back too.
Verify = Callable[[boto3.Session, str, str, Any, str, dict[str, Any]], bool]


@dataclass(frozen=True)
class RemediationAction:
    """One action of the policy file: what it does (for humans), what it acts on, how to do and check it."""

    name: str
    summary: str
    resource_types: tuple[str, ...]
    parameters: type[BaseModel]
    remediate_with: Remediate
    verify_with: Verify
    # IAM actions remediate + verify call: GovernanceExecutionRole in the member template must grant them.
    permissions: tuple[str, ...] = ()

    def remediate(
        self,
        session: boto3.Session,
        region: str,
        resource_id: str,
        parameters: dict[str, Any],
        *,
        finding: str = "",
    ) -> dict[str, Any]:
        """Change the resource; returns what was changed (for the ledger and the notification)."""
        return self.remediate_with(
            session, region, resource_id, self.parameters.model_validate(parameters), finding
        )

    def verify(
        self,
        session: boto3.Session,
        region: str,
        resource_id: str,
        parameters: dict[str, Any],
        *,
        finding: str = "",
        changes: dict[str, Any] | None = None,
    ) -> bool:
        """Read the resource back: True when the fix is really in place, including what `changes` (the
        return of remediate) says it kept (for a finding the action can only contain, when the
        containment is)."""
        return self.verify_with(
            session, region, resource_id, self.parameters.model_validate(parameters), finding, changes or {}
        )


def regional_client(session: boto3.Session, service: str, region: str) -> Any:
    """A client of `session` in `region`, loosely typed: the stubs' TypedDicts add nothing here."""
    return session.client(service, region_name=region)  # type: ignore[call-overload]


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------- S3: public access


def _public_access_block(s3: Any, bucket: str) -> dict[str, bool]:
    try:
        found = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as error:
        if _error_code(error) == "NoSuchPublicAccessBlockConfiguration":
            return {}
        raise
    return {name: bool(found.get(name)) for name in PUBLIC_ACCESS_BLOCK_SETTINGS}


def block_bucket_public_access(
    session: boto3.Session, region: str, bucket: str, parameters: _NoParameters, finding: str
) -> dict[str, Any]:
    s3 = regional_client(session, "s3", region)
    before = _public_access_block(s3, bucket)
    if all(before.get(name) for name in PUBLIC_ACCESS_BLOCK_SETTINGS):
        # Already blocked: Config's finding is older than the block, or about the ACL or policy this
        # control does not touch. Nothing is claimed (and no cap slot spent).
        return {"changed": False, "public_access_block_before": before}
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={name: True for name in PUBLIC_ACCESS_BLOCK_SETTINGS}
    )
    return {
        "public_access_block_before": before,
        "public_access_block": dict.fromkeys(PUBLIC_ACCESS_BLOCK_SETTINGS, True),
    }


def bucket_public_access_blocked(
    session: boto3.Session,
    region: str,
    bucket: str,
    parameters: _NoParameters,
    finding: str,
    changes: dict[str, Any],
) -> bool:
    found = _public_access_block(regional_client(session, "s3", region), bucket)
    return all(found.get(name) for name in PUBLIC_ACCESS_BLOCK_SETTINGS)


# --------------------------------------------------------------------------- S3: default encryption


class EncryptionParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Literal["aws:kms", "AES256"] = "aws:kms"
    # Empty: the account's AWS managed key aws/s3.
    kms_key_id: str = ""
    # Set on the configurations this control writes; a bucket already on KMS keeps its own setting.
    bucket_key: bool = True

    @field_validator("kms_key_id")
    @classmethod
    def _a_key_arn(cls, value: str) -> str:
        # S3 does not check the key at PutBucketEncryption: a wrong one is found only when uploads fail.
        # An alias or a bare key id names a different key (or none) in every account the policy covers.
        if value and not _KMS_KEY_ARN.match(value):
            raise ValueError(
                f"kms_key_id {value!r} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>)"
            )
        return value

    @model_validator(mode="after")
    def _key_only_with_kms(self) -> EncryptionParameters:
        if self.kms_key_id and self.algorithm != "aws:kms":
            raise ValueError("kms_key_id needs algorithm 'aws:kms'")
        return self


_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$")


def _default_encryption(s3: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        return list(s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"])
    except ClientError as error:
        if _error_code(error) == "ServerSideEncryptionConfigurationNotFoundError":
            return []
        raise


def _encryption_satisfies(rules: list[dict[str, Any]], wanted: EncryptionParameters) -> bool:
    """Does the bucket's default encryption already meet the control? Any KMS configuration meets a KMS
    control whatever its key, unless the policy names one key, and whatever its bucket key: neither
    s3-default-encryption-kms nor s3-bucket-server-side-encryption-enabled asks for one, and turning it on
    changes the encryption context that the team's key policies may rely on."""
    for rule in rules:
        default = rule.get("ApplyServerSideEncryptionByDefault") or {}
        algorithm = default.get("SSEAlgorithm", "")
        if wanted.algorithm == "AES256" and algorithm:
            return True  # any default encryption is at least SSE-S3
        if algorithm in ("aws:kms", "aws:kms:dsse"):
            return not wanted.kms_key_id or default.get("KMSMasterKeyID") == wanted.kms_key_id
    return False


def enable_bucket_default_encryption(
    session: boto3.Session, region: str, bucket: str, parameters: EncryptionParameters, finding: str
) -> dict[str, Any]:
    s3 = regional_client(session, "s3", region)
    before = _default_encryption(s3, bucket)
    if _encryption_satisfies(before, parameters):
        return {"changed": False, "encryption_before": before}
    # Here the bucket has no KMS default encryption (or, with kms_key_id, another key than the policy's).
    default: dict[str, str] = {"SSEAlgorithm": parameters.algorithm}
    if parameters.kms_key_id:
        default["KMSMasterKeyID"] = parameters.kms_key_id
    rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default}
    if parameters.algorithm == "aws:kms":
        # The bucket key cuts KMS requests (and their cost) by orders of magnitude for busy buckets.
        rule["BucketKeyEnabled"] = parameters.bucket_key
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    return {"changed": True, "encryption_before": before, "encryption": [rule]}


def bucket_default_encryption_enabled(
    session: boto3.Session,
    region: str,
    bucket: str,
    parameters: EncryptionParameters,
    finding: str,
    changes: dict[str, Any],
) -> bool:
    return _encryption_satisfies(
        _default_encryption(regional_client(session, "s3", region), bucket), parameters
    )


# --------------------------------------------------------------------------- S3: TLS only


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def bucket_arn(session: boto3.Session, region: str, bucket: str) -> str:
    return f"arn:{session.get_partition_for_region(region)}:s3:::{bucket}"


def denies_insecure_transport(statement: dict[str, Any], bucket_arn: str) -> bool:
    """Does this bucket-policy statement deny every S3 action over plain HTTP, on the bucket and objects?"""
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if principal != "*" and not (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))):
        return False
    # IAM reads action names without regard to case: "S3:*" is "s3:*".
    if not {"s3:*", "*"} & {str(action).lower() for action in _as_list(statement.get("Action", []))}:
        return False
    resources = set(_as_list(statement.get("Resource", [])))
    if not ({bucket_arn, f"{bucket_arn}/*"} <= resources or "*" in resources):
        return False
    # The statement must deny on aws:SecureTransport alone. A second condition (aws:SourceVpce, an IP range,
    # a principal tag) narrows the deny to the requests it matches, and plain HTTP from anywhere else is
    # still allowed: such a statement is the team's own rule, not the TLS control.
    condition = statement.get("Condition")
    if not isinstance(condition, dict) or len(condition) != 1:
        return False
    [(operator, keys)] = condition.items()
    # BoolIfExists is the same test here: every S3 request carries aws:SecureTransport.
    if operator.lower() not in ("bool", "boolifexists") or not isinstance(keys, dict) or len(keys) != 1:
        return False
    [(key, value)] = keys.items()
    # A list of values matches any of them: ["false", "FALSE"] is still false alone.
    values = {str(v).lower() for v in _as_list(value)}
    return key.lower() == "aws:securetransport" and values == {"false"}


def _bucket_policy(s3: Any, bucket: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]))
    except ClientError as error:
        if _error_code(error) == "NoSuchBucketPolicy":
            return None
        raise


# "Bucket policies are limited to 20 KB in size" (S3 User Guide); S3 counts the policy as sent.
MAX_BUCKET_POLICY_BYTES = 20 * 1024
# An IAM unique id (AIDA... a user, AROA... a role, AGPA... a group): what a bucket policy shows in place of
# a principal that was deleted. S3 refuses a policy that names one ("Invalid principal in policy").
_UNIQUE_ID = re.compile(r"^A[A-Z]{3}[A-Z0-9]{13,}$")


def _deleted_principals(statements: list[Any]) -> list[str]:
    found = []
    for statement in statements:
        principal = statement.get("Principal") if isinstance(statement, dict) else None
        if isinstance(principal, dict):
            found += [
                p for p in _as_list(principal.get("AWS", [])) if isinstance(p, str) and _UNIQUE_ID.match(p)
            ]
    return found


def _put_policy_refused(s3: Any, bucket: str, error: ClientError) -> RemediationFailed:
    """Why S3 refused the policy with the TLS statement added, in words that point at the cause."""
    code = _error_code(error)
    if code == "AccessDenied" and _public_access_block(s3, bucket).get("BlockPublicPolicy"):
        return RemediationFailed(
            f"S3 refused the bucket policy of {bucket} with the TLS statement added: the policy already "
            "grants public access, and S3 rejects every write of a public policy while Block Public Access "
            "(BlockPublicPolicy) is on; remove the public statement, then this control can add its own"
        )
    if code == "AccessDenied":
        return RemediationFailed(
            f"S3 refused the bucket policy of {bucket} with the TLS statement added (AccessDenied): if the "
            "policy grants public access, the account's Block Public Access (BlockPublicPolicy) rejects it; "
            "otherwise GovernanceExecutionRole lacks s3:PutBucketPolicy on it"
        )
    return RemediationFailed(
        f"S3 refused the bucket policy of {bucket} with the TLS statement added: {code}: "
        f"{error.response.get('Error', {}).get('Message', '')}".rstrip(": ")
    )


def require_tls_for_bucket(
    session: boto3.Session, region: str, bucket: str, parameters: _NoParameters, finding: str
) -> dict[str, Any]:
    s3 = regional_client(session, "s3", region)
    policy = _bucket_policy(s3, bucket) or {"Version": "2012-10-17", "Statement": []}
    statements = _as_list(policy.get("Statement", []))
    arn = bucket_arn(session, region, bucket)
    if any(denies_insecure_transport(statement, arn) for statement in statements):
        return {"changed": False, "statements_kept": len(statements)}
    deleted = _deleted_principals(statements)
    if deleted:
        raise RemediationFailed(
            f"the bucket policy of {bucket} names principals that no longer exist ({', '.join(deleted)}), "
            "and S3 refuses such a policy when it is written back; remove them, then this control can add "
            "its TLS statement"
        )
    sids = {statement.get("Sid") for statement in statements}
    sid = TLS_STATEMENT_SID if TLS_STATEMENT_SID not in sids else f"{TLS_STATEMENT_SID}ByGovernance"
    statement = {
        "Sid": sid,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    # Every existing statement is kept as it is: the fix adds one statement and removes nothing. Written
    # without spaces: the 20 KB limit counts them, and a team's policy near it must still fit.
    document = json.dumps({**policy, "Statement": [*statements, statement]}, separators=(",", ":"))
    size = len(document.encode("utf-8"))
    if size > MAX_BUCKET_POLICY_BYTES:
        raise RemediationFailed(
            f"the bucket policy of {bucket} would be {size:,} bytes with the TLS statement added, and S3 "
            f"accepts at most {MAX_BUCKET_POLICY_BYTES:,}; shorten the policy, then this control can add it"
        )
    try:
        s3.put_bucket_policy(Bucket=bucket, Policy=document)
    except ClientError as error:
        if is_transient(error):
            raise
        raise _put_policy_refused(s3, bucket, error) from error
    return {"changed": True, "statement_added": sid, "statements_kept": len(statements)}


def bucket_requires_tls(
    session: boto3.Session,
    region: str,
    bucket: str,
    parameters: _NoParameters,
    finding: str,
    changes: dict[str, Any],
) -> bool:
    policy = _bucket_policy(regional_client(session, "s3", region), bucket) or {}
    arn = bucket_arn(session, region, bucket)
    return any(denies_insecure_transport(s, arn) for s in _as_list(policy.get("Statement", [])))


# --------------------------------------------------------------------------- SageMaker notebook instances

_STOPPED_STATES = ("Stopping", "Stopped")
# Not running, so not exposed: what containment leaves (a Failed instance is found so, not stopped).
_CONTAINED_STATES = (*_STOPPED_STATES, "Failed")
# Transitions to wait out before the instance can be stopped (or, stopped, updated).
_NOT_READY_STATES = ("Pending", "Updating")
# The one notebook finding an action can fix: RootAccess can be changed while the instance is Stopped.
# DirectInternetAccess (sagemaker-notebook-no-direct-internet-access), subnet and security groups are fixed at
# creation: for those findings stopping the instance only contains the exposure.
ROOT_ACCESS_RULE = "sagemaker-notebook-instance-root-access-check"
DIRECT_INTERNET_RULE = "sagemaker-notebook-no-direct-internet-access"


def _managed_rule(finding: str) -> str:
    """The managed rule's name of a finding, whoever deployed its rule (Control Tower, Security Hub...)."""
    # policy.py imports this module, so its reading of rule names is imported when first needed.
    from governance.remediation.policy import base_rule_names

    return base_rule_names(finding)[-1] if finding else ""


def _tag_notebook(sagemaker: Any, arn: str, finding: str, *, stopped: bool) -> dict[str, str]:
    """Name the finding on the instance; the stop time only when the backbone stopped it."""
    tags = {FINDING_TAG: (finding or "config-non-compliance")[:256]}
    if stopped:
        tags[STOPPED_AT_TAG] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": key, "Value": value} for key, value in tags.items()])
    return tags


def stop_notebook_instance(
    session: boto3.Session, region: str, notebook: str, parameters: _NoParameters, finding: str
) -> dict[str, Any]:
    sagemaker = regional_client(session, "sagemaker", region)
    described = sagemaker.describe_notebook_instance(NotebookInstanceName=notebook)
    status = described["NotebookInstanceStatus"]
    if status in _NOT_READY_STATES:
        raise RemediationNotReady(
            f"notebook instance {notebook} is {status}; it can be stopped once InService"
        )
    if _managed_rule(finding) == ROOT_ACCESS_RULE:
        return _disable_root_access(sagemaker, notebook, described, finding)
    stopped = status == "InService"
    if stopped:
        sagemaker.stop_notebook_instance(NotebookInstanceName=notebook)
    tagged = _tag_notebook(sagemaker, described["NotebookInstanceArn"], finding, stopped=stopped)
    return {
        "changed": True,
        # Stopping ends the exposure for now but fixes nothing the rule checks: the engine reports it as
        # contained, not remediated, and the rule stays NON_COMPLIANT until the team acts.
        "contained": True,
        "reason": _containment_reason(finding, "stopped" if stopped else f"already {status.lower()}"),
        "status_before": status,
        "stopped": stopped,
        "tagged": tagged,
    }


def _containment_reason(finding: str, done: str) -> str:
    if _managed_rule(finding) == DIRECT_INTERNET_RULE:
        return (
            f"direct internet access cannot be changed on an existing notebook instance; it was {done}; "
            "recreate it in a VPC subnet with DirectInternetAccess=Disabled"
        )
    return (
        f"stopping a notebook instance changes nothing {finding or 'the rule'} checks; it was {done}; "
        "fix its configuration before starting it again"
    )


def _disable_root_access(
    sagemaker: Any, notebook: str, described: dict[str, Any], finding: str
) -> dict[str, Any]:
    """Stop the instance; once it is Stopped (a later delivery: StopNotebookInstance returns while it is
    still Stopping), turn root access off. The instance is left stopped: its team starts it again."""
    status = described["NotebookInstanceStatus"]
    root_access = described.get("RootAccess") or "Enabled"  # Enabled is the default
    if root_access == "Disabled":
        # Tagged with this finding: an earlier delivery of it stopped the instance and turned root access
        # off, and was redelivered because the update was still under way when it read the instance back.
        ours = _tagged_with(sagemaker, described["NotebookInstanceArn"], finding)
        return {"changed": ours, "status_before": status, "root_access": root_access}
    if status == "InService":
        sagemaker.stop_notebook_instance(NotebookInstanceName=notebook)
        # Tagged now, so the team sees why it stopped even if the update never comes.
        _tag_notebook(sagemaker, described["NotebookInstanceArn"], finding, stopped=True)
        raise RemediationNotReady(
            f"notebook instance {notebook} was InService and is now stopping; root access is disabled once "
            "it is Stopped"
        )
    if status == "Stopping":
        raise RemediationNotReady(
            f"notebook instance {notebook} is Stopping; root access can be disabled once it is Stopped"
        )
    if status != "Stopped":
        raise RemediationFailed(
            f"notebook instance {notebook} is {status}; root access can be disabled only on a Stopped "
            "instance"
        )
    sagemaker.update_notebook_instance(NotebookInstanceName=notebook, RootAccess="Disabled")
    return {
        "changed": True,
        "status_before": status,
        "root_access_before": root_access,
        "root_access": "Disabled",
        "tagged": _tag_notebook(sagemaker, described["NotebookInstanceArn"], finding, stopped=False),
    }


def _tagged_with(sagemaker: Any, arn: str, finding: str) -> bool:
    tags = sagemaker_tags(sagemaker, arn)
    return any(tag["Key"] == FINDING_TAG and tag.get("Value") == (finding or "")[:256] for tag in tags)


def notebook_instance_handled(
    session: boto3.Session,
    region: str,
    notebook: str,
    parameters: _NoParameters,
    finding: str,
    changes: dict[str, Any],
) -> bool:
    """Root access: disabled, whatever the status. Any other finding: what containment did (stopped or
    stopping, or found Failed, and tagged), never the finding itself, which stopping cannot fix."""
    sagemaker = regional_client(session, "sagemaker", region)
    described = sagemaker.describe_notebook_instance(NotebookInstanceName=notebook)
    if _managed_rule(finding) == ROOT_ACCESS_RULE:
        done = described.get("RootAccess") == "Disabled"
        if not done and described["NotebookInstanceStatus"] == "Updating":
            # UpdateNotebookInstance was accepted and is being applied: read it again at a later delivery.
            raise RemediationNotReady(
                f"notebook instance {notebook} is Updating; root access is read back after"
            )
    else:
        done = described["NotebookInstanceStatus"] in _CONTAINED_STATES
    if not done:
        return False
    tags = sagemaker_tags(sagemaker, described["NotebookInstanceArn"])
    return any(tag["Key"] == FINDING_TAG for tag in tags)


# --------------------------------------------------------------------------- EBS encryption by default


def enable_ebs_encryption_by_default(
    session: boto3.Session, region: str, account_id: str, parameters: _NoParameters, finding: str
) -> dict[str, Any]:
    ec2 = regional_client(session, "ec2", region)
    before = bool(ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])
    if not before:
        ec2.enable_ebs_encryption_by_default()
    return {"changed": not before, "region": region}


def ebs_encryption_by_default_enabled(
    session: boto3.Session,
    region: str,
    account_id: str,
    parameters: _NoParameters,
    finding: str,
    changes: dict[str, Any],
) -> bool:
    return bool(
        regional_client(session, "ec2", region).get_ebs_encryption_by_default()["EbsEncryptionByDefault"]
    )


# --------------------------------------------------------------------------- security groups

_PORT_RANGE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
_PROTOCOL_NAMES = {"6": "tcp", "17": "udp"}
# Ports are a range of the protocol; a security group rule holds one range of one protocol from one source.
PortRange = tuple[int, int]
EVERY_PORT: PortRange = (0, 65535)


def _port_range(text: str) -> PortRange:
    found = _PORT_RANGE.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a port or port range like '22' or '1024-2048'")
    low = int(found.group(1))
    high = int(found.group(2) or low)
    if not 0 <= low <= high <= 65535:
        raise ValueError(f"{text!r} is not a port range within 0-65535")
    return low, high


def _protocol(value: Any) -> str:
    """`tcp`, `udp`, `-1`, `icmp`...: a rule may name tcp and udp by number (6, 17)."""
    return _PROTOCOL_NAMES.get(str(value), str(value))


def _ports_text(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def _merge(spans: Iterable[PortRange]) -> list[PortRange]:
    """Sorted, with overlapping and adjacent ranges joined: 8000-8005 and 8006 are one range 8000-8006."""
    merged: list[PortRange] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged


def _merged(ranges: list[str]) -> list[PortRange]:
    return _merge(map(_port_range, ranges))


def _minus(span: PortRange, taken: list[PortRange]) -> list[PortRange]:
    """The ports of `span` outside the (merged) `taken` ranges."""
    low, high = span
    left: list[PortRange] = []
    for taken_low, taken_high in taken:
        if taken_high < low or taken_low > high:
            continue
        if taken_low > low:
            left.append((low, taken_low - 1))
        low = taken_high + 1
    if low <= high:
        left.append((low, high))
    return left


def _within(span: PortRange, allowed: list[PortRange]) -> list[PortRange]:
    """The ports of `span` inside the (merged) `allowed` ranges."""
    low, high = span
    return [
        (max(low, a_low), min(high, a_high)) for a_low, a_high in allowed if a_low <= high and low <= a_high
    ]


class IngressParameters(BaseModel):
    """Either the ports that must never be open to the world, or the only ports that may be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    blocked_tcp_ports: list[str] = Field(default_factory=list)
    allowed_tcp_ports: list[str] | None = None
    allowed_udp_ports: list[str] | None = None

    @field_validator("blocked_tcp_ports", "allowed_tcp_ports", "allowed_udp_ports", mode="before")
    @classmethod
    def _ports_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(item) for item in value]
        return value

    @field_validator("blocked_tcp_ports", "allowed_tcp_ports", "allowed_udp_ports")
    @classmethod
    def _valid_ranges(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            _port_range(item)
        return value

    @model_validator(mode="after")
    def _one_way(self) -> IngressParameters:
        allowing = self.allowed_tcp_ports is not None or self.allowed_udp_ports is not None
        if bool(self.blocked_tcp_ports) == allowing:
            raise ValueError("give either blocked_tcp_ports or allowed_tcp_ports/allowed_udp_ports")
        return self

    def allowed(self, protocol: str) -> list[PortRange]:
        """The ports of tcp or udp that may be open to the world (allowed mode; none for other protocols)."""
        ports = {"tcp": self.allowed_tcp_ports, "udp": self.allowed_udp_ports}.get(protocol)
        return _merged(ports or [])

    def permitted(self, protocol: str, low: int, high: int) -> list[PortRange]:
        """The ports of a world-open tcp/udp range that this control lets stay open: what a narrowed rule
        keeps. The whole range when the control has nothing against it."""
        protocol = _protocol(protocol)
        span = EVERY_PORT if low < 0 else (low, high)  # tcp/udp without ports: every port
        if protocol not in ("tcp", "udp"):
            return [span]  # ICMP and other protocols have no ports these controls speak of
        if self.blocked_tcp_ports:
            return _minus(span, _merged(self.blocked_tcp_ports)) if protocol == "tcp" else [span]
        return _within(span, self.allowed(protocol))

    def forbids(self, protocol: str, low: int, high: int) -> bool:
        """Is world-open ingress on this protocol and port range something this control removes?"""
        protocol = _protocol(protocol)
        if protocol == "-1":
            return True  # all traffic includes every port
        if protocol not in ("tcp", "udp"):
            return False
        span = EVERY_PORT if low < 0 else (low, high)
        return self.permitted(protocol, *span) != [span]

    def blocked_text(self) -> str:
        """`port 22`, `ports 20-21, 3306`: what blocked mode leaves out, for a human."""
        ports = [_ports_text(*span) for span in _merged(self.blocked_tcp_ports)]
        return f"port {ports[0]}" if len(ports) == 1 and "-" not in ports[0] else f"ports {', '.join(ports)}"


def _world_open_ingress(ec2: Any, group_id: str) -> list[dict[str, Any]]:
    rules = [
        rule
        for page in ec2.get_paginator("describe_security_group_rules").paginate(
            Filters=[{"Name": "group-id", "Values": [group_id]}]
        )
        for rule in page["SecurityGroupRules"]
        if not rule.get("IsEgress")
        and (rule.get("CidrIpv4") in WORLD_CIDRS or rule.get("CidrIpv6") in WORLD_CIDRS)
    ]
    if not rules:
        # An unknown group id raises here, so "nothing to revoke" is never said about a group that is gone.
        ec2.describe_security_groups(GroupIds=[group_id])
    return rules


def _cidr(rule: dict[str, Any]) -> str:
    return str(rule.get("CidrIpv4") or rule.get("CidrIpv6"))


def _describe_rule(rule: dict[str, Any]) -> dict[str, Any]:
    low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
    return {
        "rule_id": rule["SecurityGroupRuleId"],
        "protocol": rule["IpProtocol"],
        "ports": "all" if low == -1 else _ports_text(low, high),
        "cidr": _cidr(rule),
    }


def _forbidden_rules(rules: list[dict[str, Any]], parameters: IngressParameters) -> list[dict[str, Any]]:
    return [
        rule
        for rule in rules
        if parameters.forbids(
            str(rule["IpProtocol"]), int(rule.get("FromPort", -1)), int(rule.get("ToPort", -1))
        )
    ]


def _remainder(rule: dict[str, Any], parameters: IngressParameters) -> list[tuple[str, PortRange]] | None:
    """What of a forbidden world-open rule may stay open, as (protocol, ports); None when no set of rules
    can say it: all traffic but one tcp port is every other protocol, and every other port, at once."""
    protocol = _protocol(rule["IpProtocol"])
    if protocol == "-1":
        if parameters.blocked_tcp_ports:
            return None
        return [(name, span) for name in ("tcp", "udp") for span in parameters.allowed(name)]
    low, high = int(rule.get("FromPort", -1)), int(rule.get("ToPort", -1))
    return [(protocol, span) for span in parameters.permitted(protocol, low, high)]


def _keep(ec2: Any, group_id: str, rule: dict[str, Any], protocol: str, span: PortRange) -> dict[str, Any]:
    """Open `span` of `protocol` from the rule's own source, with its description: the part of a forbidden
    rule the workload may go on using. A rule already there (InvalidPermission.Duplicate) is kept as is."""
    cidr = _cidr(rule)
    source = {"CidrIp": cidr} if rule.get("CidrIpv4") else {"CidrIpv6": cidr}
    if rule.get("Description"):
        source["Description"] = str(rule["Description"])
    ranges = "IpRanges" if rule.get("CidrIpv4") else "Ipv6Ranges"
    permission = {"IpProtocol": protocol, "FromPort": span[0], "ToPort": span[1], ranges: [source]}
    try:
        # One call per range: AWS refuses a whole request when one of its rules already exists.
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[permission])
        added = True
    except ClientError as error:
        if _error_code(error) != "InvalidPermission.Duplicate":
            raise
        added = False
    return {
        "protocol": protocol,
        "ports": _ports_text(*span),
        "cidr": cidr,
        "description": str(rule.get("Description", "")),
        "added": added,
        "replaces": rule["SecurityGroupRuleId"],
    }


def revoke_open_ingress(
    session: boto3.Session, region: str, group_id: str, parameters: IngressParameters, finding: str
) -> dict[str, Any]:
    ec2 = regional_client(session, "ec2", region)
    forbidden = _forbidden_rules(_world_open_ingress(ec2, group_id), parameters)
    revoked: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    notes: list[str] = []
    for rule in forbidden:
        described = _describe_rule(rule)
        remainder = _remainder(rule, parameters)
        if remainder is None:
            described["reason"] = (
                f"all traffic from {described['cidr']} cannot be narrowed to leave out "
                f"{parameters.blocked_text()}; revoked whole: add back what the workload needs as tcp or "
                "udp rules"
            )
            notes.append(described["reason"])
        # Least change: the ports the control has nothing against stay open to the world, as rules of
        # their own, authorized before the wide rule goes, so they are never closed in between.
        kept += [_keep(ec2, group_id, rule, protocol, span) for protocol, span in remainder or []]
        revoked.append(described)
    if forbidden:
        # By rule id: exactly these world-open rules go; the same ports from other sources stay.
        ec2.revoke_security_group_ingress(
            GroupId=group_id, SecurityGroupRuleIds=[rule["SecurityGroupRuleId"] for rule in forbidden]
        )
    changes: dict[str, Any] = {"changed": bool(forbidden), "revoked": revoked, "kept": kept}
    if notes:
        changes["notes"] = notes
    return changes


def _open_ports(rules: list[dict[str, Any]], protocol: str, cidr: str) -> list[PortRange]:
    return _merge(
        EVERY_PORT if int(rule.get("FromPort", -1)) < 0 else (int(rule["FromPort"]), int(rule["ToPort"]))
        for rule in rules
        if _protocol(rule["IpProtocol"]) == protocol and _cidr(rule) == cidr
    )


def no_forbidden_open_ingress(
    session: boto3.Session,
    region: str,
    group_id: str,
    parameters: IngressParameters,
    finding: str,
    changes: dict[str, Any],
) -> bool:
    """No world-open rule on a forbidden port, and every port the fix kept still open from its source: a
    fix that closed the workload's allowed ports too is not the fix the control promises."""
    rules = _world_open_ingress(regional_client(session, "ec2", region), group_id)
    if _forbidden_rules(rules, parameters):
        return False
    return all(
        _within(_port_range(kept["ports"]), _open_ports(rules, kept["protocol"], kept["cidr"]))
        == [_port_range(kept["ports"])]
        for kept in changes.get("kept", [])
    )


# --------------------------------------------------------------------------- CloudTrail


def _own_trails(session: boto3.Session, region: str, account_id: str) -> list[dict[str, Any]]:
    trails = regional_client(session, "cloudtrail", region).describe_trails(includeShadowTrails=True)[
        "trailList"
    ]
    # An organization trail of the management account shows here too, but only its owner can start it.
    return [trail for trail in trails if trail["TrailARN"].split(":")[4] == account_id]


def _is_logging(session: boto3.Session, trail: dict[str, Any]) -> bool:
    cloudtrail = regional_client(session, "cloudtrail", trail["HomeRegion"])
    return bool(cloudtrail.get_trail_status(Name=trail["TrailARN"])["IsLogging"])


def _trail_to_start(trails: list[dict[str, Any]], region: str) -> dict[str, Any]:
    """The one trail whose logging brings the account's audit back with the least change: a multi-Region
    trail first (it records the management events of every Region), then one homed in the finding's
    Region, then the first by ARN."""
    return min(
        trails,
        key=lambda trail: (
            not trail.get("IsMultiRegionTrail"),
            trail["HomeRegion"] != region,
            trail["TrailARN"],
        ),
    )


def start_trail_logging(
    session: boto3.Session, region: str, account_id: str, parameters: _NoParameters, finding: str
) -> dict[str, Any]:
    """Start one stopped trail, not every one: a trail may be stopped on purpose (a data-events trail costs
    per event), and one logging trail is what `cloudtrail-enabled` asks for. The others stay as they are,
    named in the changes for the security team."""
    trails = _own_trails(session, region, account_id)
    if not trails:
        raise RemediationFailed(
            f"account {account_id} has no CloudTrail trail of its own in {region} to start; create one "
            "(or have the management account's organization trail cover it)"
        )
    arns = [trail["TrailARN"] for trail in trails]
    logging = [trail["TrailARN"] for trail in trails if _is_logging(session, trail)]
    if logging:
        return {"changed": False, "started": [], "logging": logging, "trails": arns}
    chosen = _trail_to_start(trails, region)
    # StartLogging must be called in the trail's home Region, which may not be the event's.
    regional_client(session, "cloudtrail", chosen["HomeRegion"]).start_logging(Name=chosen["TrailARN"])
    return {
        "changed": True,
        "started": [chosen["TrailARN"]],
        "left_stopped": [arn for arn in arns if arn != chosen["TrailARN"]],
        "trails": arns,
    }


def trails_logging(
    session: boto3.Session,
    region: str,
    account_id: str,
    parameters: _NoParameters,
    finding: str,
    changes: dict[str, Any],
) -> bool:
    """The trail started is logging; before any change (or when none was needed), one of the account's is."""
    trails = _own_trails(session, region, account_id)
    started = [trail for trail in trails if trail["TrailARN"] in (changes.get("started") or [])]
    if changes.get("started"):
        return len(started) == len(changes["started"]) and all(_is_logging(session, t) for t in started)
    return any(_is_logging(session, trail) for trail in trails)


# --------------------------------------------------------------------------- the registry the policy names

ACTIONS: dict[str, RemediationAction] = {
    action.name: action
    for action in (
        RemediationAction(
            "block_bucket_public_access",
            "turn on all four S3 Block Public Access settings of the bucket",
            ("AWS::S3::Bucket",),
            _NoParameters,
            block_bucket_public_access,
            bucket_public_access_blocked,
            ("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
        ),
        RemediationAction(
            "enable_bucket_default_encryption",
            "set default encryption on a bucket without it (or, for a KMS control, on SSE-S3): the "
            "parameters' algorithm and key, with a bucket key for KMS; a bucket on KMS keeps its key",
            ("AWS::S3::Bucket",),
            EncryptionParameters,
            enable_bucket_default_encryption,
            bucket_default_encryption_enabled,
            ("s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration"),
        ),
        RemediationAction(
            "require_tls_for_bucket",
            "add a bucket-policy statement denying requests without TLS, keeping every existing statement",
            ("AWS::S3::Bucket",),
            _NoParameters,
            require_tls_for_bucket,
            bucket_requires_tls,
            ("s3:GetBucketPolicy", "s3:PutBucketPolicy"),
        ),
        RemediationAction(
            "stop_notebook_instance",
            "stop the notebook instance and tag it with the finding, then disable its root access for a "
            "root-access finding; any other finding is only contained, not fixed",
            ("AWS::SageMaker::NotebookInstance",),
            _NoParameters,
            stop_notebook_instance,
            notebook_instance_handled,
            (
                "sagemaker:DescribeNotebookInstance",
                "sagemaker:StopNotebookInstance",
                "sagemaker:UpdateNotebookInstance",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ),
        ),
        RemediationAction(
            "enable_ebs_encryption_by_default",
            "turn on EBS encryption by default in the account and region",
            ("AWS::::Account",),
            _NoParameters,
            enable_ebs_encryption_by_default,
            ebs_encryption_by_default_enabled,
            ("ec2:GetEbsEncryptionByDefault", "ec2:EnableEbsEncryptionByDefault"),
        ),
        RemediationAction(
            "revoke_open_ingress",
            "narrow the 0.0.0.0/0 and ::/0 ingress rules to leave out the forbidden ports, keeping the rest",
            ("AWS::EC2::SecurityGroup",),
            IngressParameters,
            revoke_open_ingress,
            no_forbidden_open_ingress,
            (
                "ec2:DescribeSecurityGroupRules",
                "ec2:DescribeSecurityGroups",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupIngress",
            ),
        ),
        RemediationAction(
            "start_trail_logging",
            "start logging on one of the account's stopped CloudTrail trails",
            ("AWS::::Account",),
            _NoParameters,
            start_trail_logging,
            trails_logging,
            ("cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:StartLogging"),
        ),
    )
}
