"""Edge cases of the remediation controls that the sample events do not reach: a policy naming its own KMS
key or bucket-key setting, a bucket on DSSE-KMS, notebooks mid-update or Failed, security-group sources
that are not CIDRs, an authorize refused half way through a fix, the read-back of each source, and trails
homed in another Region or owned by the organization. Each finding goes through the emulated organization
(where a change must be lost between the fix and its read-back, the control is wrapped to lose it); the
tests then read the member account back."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from moto.cloudtrail.models import cloudtrail_backends

from govern.emulator import Organization
from govern.faults import Fault, inject_api_faults
from govern.flows.config_remediation import create_bucket
from governance.remediation import controls, engine
from tests.flows.test_config_remediation import (
    MANAGEMENT,
    MEMBER,
    REGION,
    TEAM_KEY,
    EventLoader,
    aws,
    bucket_state,
    in_region,
    notebook_state,
    on_rule,
    remediations,
    security_notices,
    set_notebook_status,
    with_policy,
)

# --------------------------------------------------------------------------- S3 default encryption (KMS)

KMS_RULE = "s3-default-encryption-kms"
BUCKET = "team-churn-raw"  # the bucket of the default-encryption sample event
# The packaged policy's parameters of the KMS control, which the variants below replace.
KMS_PARAMETERS = 'algorithm = "aws:kms"\nbucket_key = true'


def kms_finding(load_event: EventLoader) -> dict[str, Any]:
    """The default-encryption sample, reported by s3-default-encryption-kms (the KMS control)."""
    return on_rule(load_event("config-s3-default-encryption-conformance-pack"), KMS_RULE)


def encrypt(org: Organization, bucket: str, default: dict[str, str], *, bucket_key: bool) -> None:
    rules = [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": bucket_key}]
    aws(org, MEMBER, "s3").put_bucket_encryption(
        Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules}
    )


@pytest.mark.parametrize("found", ["no default encryption", "SSE-S3", "aws/s3"])
def test_a_policy_naming_a_kms_key_puts_that_key_on_the_bucket(
    org: Organization, load_event: EventLoader, tmp_path: Path, found: str
) -> None:
    """kms_key_id is the key the bucket must end up on: written in place of none, of SSE-S3, and of the
    account's aws/s3 key (a KMS configuration, but not the key the policy asks for)."""
    with_policy(
        org,
        tmp_path,
        replace=(KMS_PARAMETERS, f'algorithm = "aws:kms"\nkms_key_id = "{TEAM_KEY}"\nbucket_key = true'),
    )
    event = kms_finding(load_event)
    org.seed(event)
    if found == "SSE-S3":
        encrypt(org, BUCKET, {"SSEAlgorithm": "AES256"}, bucket_key=False)
    elif found == "aws/s3":
        encrypt(org, BUCKET, {"SSEAlgorithm": "aws:kms"}, bucket_key=True)
    before = bucket_state(org, MEMBER, BUCKET)

    [result] = org.replay([event], seed=False)

    after = bucket_state(org, MEMBER, BUCKET)
    assert after["encryption"] == [
        {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": TEAM_KEY},
            "BucketKeyEnabled": True,
        }
    ]
    assert {**after, "encryption": None} == {**before, "encryption": None}
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    [entry] = remediations(org, event["id"])
    assert entry.detail["changes"]["encryption_before"] == (before["encryption"] or [])


def test_a_policy_without_bucket_key_writes_kms_without_one(
    org: Organization, load_event: EventLoader, tmp_path: Path
) -> None:
    """bucket_key = false is the security team's choice (a key policy conditioned on the object's ARN
    breaks under a bucket key): the configuration written keeps it off."""
    with_policy(org, tmp_path, replace=(KMS_PARAMETERS, 'algorithm = "aws:kms"\nbucket_key = false'))
    event = kms_finding(load_event)
    org.seed(event)
    encrypt(org, BUCKET, {"SSEAlgorithm": "AES256"}, bucket_key=False)

    [result] = org.replay([event], seed=False)

    [rule] = bucket_state(org, MEMBER, BUCKET)["encryption"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms"}
    assert rule.get("BucketKeyEnabled", False) is False  # S3 reads a missing setting as disabled
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    [entry] = remediations(org, event["id"])
    assert entry.detail["changes"]["encryption"][0]["BucketKeyEnabled"] is False


def test_a_bucket_on_dsse_kms_meets_the_kms_control_and_is_left_alone(
    org: Organization, load_event: EventLoader
) -> None:
    """Dual-layer SSE-KMS is KMS encryption (and more): moving it to single-layer aws/s3 would weaken it."""
    event = kms_finding(load_event)
    org.seed(event)
    encrypt(org, BUCKET, {"SSEAlgorithm": "aws:kms:dsse", "KMSMasterKeyID": TEAM_KEY}, bucket_key=False)
    before = bucket_state(org, MEMBER, BUCKET)

    [result] = org.replay([event], seed=False)

    assert bucket_state(org, MEMBER, BUCKET) == before
    assert before["encryption"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms:dsse"
    assert [(a.type, a.status) for a in result.actions] == [("remediate", "notify-only"), ("notify", "done")]
    [notice] = security_notices(org, event["id"])
    assert notice.subject.endswith(f"bucket {BUCKET} in {MEMBER} not remediated (already compliant)")


# --------------------------------------------------------------------------- SageMaker notebook instances

# (sample event, its notebook): the finding a stop can fix (root access) and the one it only contains.
ROOT_ACCESS = ("config-notebook-root-access", "fraud-analysis")
DIRECT_INTERNET = ("config-notebook-direct-internet", "churn-exploration")


def notebook_after_each_delivery(
    org: Organization, monkeypatch: pytest.MonkeyPatch, name: str, *, then: str | None = None
) -> list[dict[str, Any]]:
    """The notebook as each delivery of the remediation function left it, in order; after the first,
    SageMaker moves it to `then` (when given), as it would between two deliveries."""
    seen: list[dict[str, Any]] = []
    invoke = org._invoke

    def deliver(function: Any, payload: Any) -> Any:
        response = invoke(function, payload)
        if function.logical_id == "RemediateConfigFunction":
            seen.append(notebook_state(org, MEMBER, name))
            if then and len(seen) == 1:
                set_notebook_status(MEMBER, name, then)
        return response

    monkeypatch.setattr(org, "_invoke", deliver)
    return seen


@pytest.mark.parametrize(("sample", "name"), [ROOT_ACCESS, DIRECT_INTERNET])
def test_a_notebook_updating_is_left_alone_and_handled_at_a_later_delivery(
    org: Organization, load_event: EventLoader, monkeypatch: pytest.MonkeyPatch, sample: str, name: str
) -> None:
    """An instance being updated can be neither stopped nor updated: the delivery changes nothing and the
    queue brings the record back; once SageMaker has finished (InService), the control acts."""
    event = load_event(sample)
    org.seed(event)
    set_notebook_status(MEMBER, name, "Updating")
    seen = notebook_after_each_delivery(org, monkeypatch, name, then="InService")

    [result] = org.replay([event], seed=False)

    updating = seen[0]
    assert (updating["NotebookInstanceStatus"], updating["RootAccess"]) == ("Updating", "Enabled")
    assert updating["tags"] == {"team": "churn"}  # not even tagged
    assert result.outcome == "succeeded", result.error
    after = notebook_state(org, MEMBER, name)
    assert after["NotebookInstanceStatus"] == "Stopped"
    assert after["tags"]["governance:finding"] == event["detail"]["configRuleName"]
    assert "governance:stopped-at" in after["tags"]  # the backbone stopped it, after the update
    [entry] = remediations(org, event["id"])  # the waiting deliveries decided nothing
    if sample == ROOT_ACCESS[0]:
        # Stopped at the second delivery, root access off at the third.
        assert len(seen) == 3
        assert after["RootAccess"] == "Disabled"
        assert (entry.status, entry.detail["changes"]["status_before"]) == ("done", "Stopped")
    else:
        assert len(seen) == 2
        assert after["RootAccess"] == "Enabled"
        assert (entry.status, entry.detail["changes"]["status_before"]) == ("notify-only", "InService")
        assert entry.detail["changes"]["stopped"] is True


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between read-backs of a fix, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(engine.time, "sleep", waits.append)
    return waits


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_a_notebook_not_running_is_only_tagged_with_the_direct_internet_finding_and_reported_contained(
    org: Organization, load_event: EventLoader, no_waits: list[float], status: str
) -> None:
    """Containment is the stop and the tag. A Failed instance is not running (StopNotebookInstance is for an
    InService one) and one its team stopped is already stopped: either is contained as it stands, gets
    the finding named on it (it must not be started again as it is), no stop time the backbone did not
    set, and the notice says so."""
    event = load_event(DIRECT_INTERNET[0])
    org.seed(event)
    if status == "Stopped":
        aws(org, MEMBER, "sagemaker").stop_notebook_instance(NotebookInstanceName=DIRECT_INTERNET[1])
    else:
        set_notebook_status(MEMBER, DIRECT_INTERNET[1], status)

    [result] = org.replay([event], seed=False)

    after = notebook_state(org, MEMBER, DIRECT_INTERNET[1])
    assert after["NotebookInstanceStatus"] == status
    assert after["tags"] == {
        "team": "churn",
        "governance:finding": "sagemaker-notebook-no-direct-internet-access",
    }
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "notify-only", True),
        ("notify", "done", True),
    ]
    [notice] = security_notices(org, event["id"])
    assert notice.subject.endswith(f"notebook {DIRECT_INTERNET[1]} in {MEMBER} contained, not remediated")
    assert f"it was already {status.lower()}" in notice.message["reason"]
    [entry] = remediations(org, event["id"])
    assert (entry.detail["changes"]["status_before"], entry.detail["changes"]["stopped"]) == (status, False)
    assert no_waits == []  # the first read-back agreed


def test_a_failed_notebook_keeps_root_access_and_the_failure_says_why(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event(ROOT_ACCESS[0])
    org.seed(event)
    set_notebook_status(MEMBER, ROOT_ACCESS[1], "Failed")

    [result] = org.replay([event], seed=False)

    after = notebook_state(org, MEMBER, ROOT_ACCESS[1])
    assert (after["NotebookInstanceStatus"], after["RootAccess"]) == ("Failed", "Enabled")
    assert after["tags"] == {"team": "churn"}
    assert result.outcome == "failed"
    [entry] = remediations(org, event["id"])
    assert entry.status == "failed"
    assert entry.detail["error"] == (
        "notebook instance fraud-analysis is Failed; root access can be disabled only on a Stopped instance"
    )


def test_containment_whose_tag_is_gone_at_the_read_back_is_not_reported_contained(
    org: Organization, load_event: EventLoader, monkeypatch: pytest.MonkeyPatch, no_waits: list[float]
) -> None:
    """The finding tag is half of the containment (it tells the team why the notebook is stopped and not to
    start it as it is): a stopped notebook without it, here because the tag is gone by the time the
    fix is read back, is a failed containment, not a contained finding."""
    event = load_event(DIRECT_INTERNET[0])
    org.seed(event)
    real = controls.ACTIONS["stop_notebook_instance"]

    def tag_lost(session: Any, region: str, name: str, *args: Any) -> dict[str, Any]:
        changes = real.remediate_with(session, region, name, *args)
        sagemaker = session.client("sagemaker", region_name=region)
        arn = sagemaker.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceArn"]
        sagemaker.delete_tags(ResourceArn=arn, TagKeys=["governance:finding"])
        return changes

    monkeypatch.setitem(controls.ACTIONS, real.name, dataclasses.replace(real, remediate_with=tag_lost))

    [result] = org.replay([event], seed=False)

    after = notebook_state(org, MEMBER, DIRECT_INTERNET[1])
    assert after["NotebookInstanceStatus"] == "Stopped"
    assert "governance:finding" not in after["tags"]
    assert result.outcome == "failed"
    assert no_waits == list(engine.VERIFY_WAITS_S)  # read back after every wait, never tagged
    [entry] = remediations(org, event["id"])
    assert entry.status == "failed"
    assert entry.detail["error"].endswith("still shows it not contained")


# --------------------------------------------------------------------------- security groups

SSH_GROUP = "sg-0123456789abcdef0"  # the group of the restricted-ssh sample event


def ingress_by_source(org: Organization, group_id: str) -> set[tuple[str, int, int, str]]:
    """The group's ingress rules as (protocol, from, to, source), whatever the source: an IPv4 or IPv6
    range, a prefix list or a security group."""
    rules = aws(org, MEMBER, "ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}]
    )["SecurityGroupRules"]
    return {
        (
            rule["IpProtocol"],
            rule["FromPort"],
            rule["ToPort"],
            rule.get("CidrIpv4")
            or rule.get("CidrIpv6")
            or rule.get("PrefixListId")
            or rule["ReferencedGroupInfo"]["GroupId"],
        )
        for rule in rules
        if not rule["IsEgress"]
    }


def test_ssh_from_a_prefix_list_a_security_group_or_a_private_ipv6_range_stays(
    org: Organization, load_event: EventLoader
) -> None:
    """Only 0.0.0.0/0 and ::/0 are the world: a rule whose source is a prefix list or a security group has
    no CIDR at all, and must not be read as world-open for lack of one."""
    event = load_event("config-security-group-ssh")
    org.seed(event)
    ec2 = aws(org, MEMBER, "ec2")
    prefix_list = ec2.create_managed_prefix_list(
        PrefixListName="corp-offices", MaxEntries=5, AddressFamily="IPv4", Entries=[{"Cidr": "192.0.2.0/24"}]
    )["PrefixList"]["PrefixListId"]
    bastions = ec2.create_security_group(GroupName="team-bastions", Description="team bastions")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=SSH_GROUP,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "PrefixListIds": [{"PrefixListId": prefix_list}],
                "UserIdGroupPairs": [{"GroupId": bastions}],
                "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}],
            }
        ],
    )
    others = {("tcp", 22, 22, prefix_list), ("tcp", 22, 22, bastions), ("tcp", 22, 22, "2001:db8::/32")}
    before = ingress_by_source(org, SSH_GROUP)
    assert others <= before

    [result] = org.replay([event], seed=False)

    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    after = ingress_by_source(org, SSH_GROUP)
    world = {("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 22, 22, "::/0"), ("tcp", 0, 1024, "0.0.0.0/0")}
    narrowed = {("tcp", 0, 21, "0.0.0.0/0"), ("tcp", 23, 1024, "0.0.0.0/0")}
    assert after == (before - world) | narrowed
    [entry] = remediations(org, event["id"])
    assert sorted(rule["cidr"] for rule in entry.detail["changes"]["revoked"]) == sorted(
        cidr for *_, cidr in world
    )


def test_an_authorize_refused_while_narrowing_leaves_every_rule_as_it_was(
    org: Organization, load_event: EventLoader
) -> None:
    """The kept part of a wide range is authorized before anything is revoked: when EC2 refuses it (a group
    at its rules limit), the world-open rules are all still there, and nothing was closed that the
    workload needs. The finding is reported failed, with EC2's reason."""
    event = load_event("config-security-group-ssh")
    org.seed(event)
    before = ingress_by_source(org, SSH_GROUP)
    assert ("tcp", 0, 1024, "0.0.0.0/0") in before and ("tcp", 22, 22, "0.0.0.0/0") in before
    full = Fault(
        "ec2",
        "AuthorizeSecurityGroupIngress",
        "RulesPerSecurityGroupLimitExceeded",
        400,
        account=MEMBER,
        message="The maximum number of rules per security group has been reached.",
    )

    with inject_api_faults(org, [full]):
        [result] = org.replay([event], seed=False)

    assert full.hits == 1
    assert ingress_by_source(org, SSH_GROUP) == before
    assert result.outcome == "failed"
    [entry] = remediations(org, event["id"])
    assert entry.status == "failed"
    assert "RulesPerSecurityGroupLimitExceeded" in entry.detail["error"]
    [notice] = security_notices(org, event["id"])
    assert notice.subject.endswith(f"security group {SSH_GROUP} in {MEMBER} remediation FAILED")


@pytest.mark.parametrize(("lost", "other"), [("0.0.0.0/0", "::/0"), ("::/0", "0.0.0.0/0")])
def test_a_kept_range_is_read_back_from_its_own_source(
    org: Organization,
    load_event: EventLoader,
    monkeypatch: pytest.MonkeyPatch,
    no_waits: list[float],
    lost: str,
    other: str,
) -> None:
    """A wide range open to both 0.0.0.0/0 and ::/0 is narrowed for each source. When the kept part of one
    source is not there at the read-back (here removed right after the fix, as by the team's
    infrastructure code reapplying an older template), the same ports open from the other source do not
    stand in for it: the fix is not verified."""
    event = load_event("config-security-group-ssh")
    org.seed(event)
    aws(org, MEMBER, "ec2").authorize_security_group_ingress(
        GroupId=SSH_GROUP,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 0,
                "ToPort": 1024,
                "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "team web tier"}],
            }
        ],
    )
    real = controls.ACTIONS["revoke_open_ingress"]

    def kept_range_lost(session: Any, region: str, group_id: str, *args: Any) -> dict[str, Any]:
        changes = real.remediate_with(session, region, group_id, *args)
        ec2 = session.client("ec2", region_name=region)
        rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
        [rule_id] = [
            rule["SecurityGroupRuleId"]
            for rule in rules["SecurityGroupRules"]
            if (rule["FromPort"], rule["ToPort"], rule.get("CidrIpv4") or rule.get("CidrIpv6"))
            == (23, 1024, lost)
        ]
        ec2.revoke_security_group_ingress(GroupId=group_id, SecurityGroupRuleIds=[rule_id])
        return changes

    monkeypatch.setitem(
        controls.ACTIONS, real.name, dataclasses.replace(real, remediate_with=kept_range_lost)
    )

    [result] = org.replay([event], seed=False)

    after = ingress_by_source(org, SSH_GROUP)
    assert ("tcp", 23, 1024, other) in after and ("tcp", 0, 21, other) in after
    assert ("tcp", 23, 1024, lost) not in after and ("tcp", 0, 21, lost) in after
    assert not {rule for rule in after if rule[3] in (lost, other) and rule[1] <= 22 <= rule[2]}
    assert result.outcome == "failed"
    assert no_waits == list(engine.VERIFY_WAITS_S)
    [entry] = remediations(org, event["id"])
    assert entry.status == "failed"
    assert entry.detail["error"].endswith("still shows it not fixed")
    assert {(kept["ports"], kept["cidr"]) for kept in entry.detail["changes"]["kept"]} == {
        ("0-21", "0.0.0.0/0"),
        ("23-1024", "0.0.0.0/0"),
        ("0-21", "::/0"),
        ("23-1024", "::/0"),
    }


# --------------------------------------------------------------------------- CloudTrail

SEEDED_TRAIL = "org-team-trail"  # what seeding the cloudtrail-enabled sample creates: single-Region, stopped
OTHER_REGION = "us-west-2"


def create_trail(
    org: Organization, account: str, region: str, name: str, *, organization: bool = False
) -> str:
    """A stopped multi-Region trail homed in `region`, logging to a bucket of its own; returns its ARN."""
    bucket = f"{name}-logs-{account}"
    create_bucket(aws(org, account, "s3", region), bucket, region)
    created = aws(org, account, "cloudtrail", region).create_trail(
        Name=name, S3BucketName=bucket, IsMultiRegionTrail=True, IsOrganizationTrail=organization
    )
    return str(created["TrailARN"])


def is_logging(org: Organization, account: str, region: str, name: str) -> bool:
    """The trail's status, asked in its home Region of the account that owns it."""
    return bool(aws(org, account, "cloudtrail", region).get_trail_status(Name=name)["IsLogging"])


def test_a_trail_homed_in_another_region_is_started_in_its_home_region(
    org: Organization, load_event: EventLoader
) -> None:
    """A multi-Region trail homed in us-west-2 shows in us-east-1 too, where the finding is; CloudTrail
    starts it only when asked in us-west-2."""
    event = load_event("config-cloudtrail-logging")
    org.seed(event)
    west = create_trail(org, MEMBER, OTHER_REGION, "team-audit")

    [result] = org.replay([event], seed=False)

    assert is_logging(org, MEMBER, OTHER_REGION, "team-audit") is True
    assert is_logging(org, MEMBER, REGION, SEEDED_TRAIL) is False  # one trail is started, not every one
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    [entry] = remediations(org, event["id"])
    assert entry.detail["changes"]["started"] == [west]


def test_of_two_multi_region_trails_the_one_homed_in_the_findings_region_is_started(
    org: Organization, load_event: EventLoader
) -> None:
    """Both record every Region; the finding's own Region breaks the tie (ahead of the ARNs' order, which
    would pick us-east-1's)."""
    event = in_region(load_event("config-cloudtrail-logging"), OTHER_REGION, event_id="trail-in-us-west-2")
    org.seed(event)  # the team trail, single-Region in us-west-2
    east = create_trail(org, MEMBER, REGION, "team-audit-east")
    west = create_trail(org, MEMBER, OTHER_REGION, "team-audit-west")
    assert east < west

    [result] = org.replay([event], seed=False)

    assert is_logging(org, MEMBER, OTHER_REGION, "team-audit-west") is True
    assert is_logging(org, MEMBER, REGION, "team-audit-east") is False
    assert is_logging(org, MEMBER, OTHER_REGION, SEEDED_TRAIL) is False
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    [entry] = remediations(org, event["id"])
    assert entry.detail["changes"]["started"] == [west]
    assert east in entry.detail["changes"]["left_stopped"]


def show_organization_trail(member: str, name: str) -> None:
    """In AWS the management account's organization trail shows in each member account's DescribeTrails,
    with its own ARN (the management account's). moto keeps every account's trails apart, so the trail
    object itself is shown to the member's CloudTrail too: whatever the member did to it, the management
    account's trail would show."""
    home = cloudtrail_backends[MANAGEMENT][REGION].trails[name]
    cloudtrail_backends[member][REGION].trails[name] = home


@pytest.mark.parametrize("own_trail", [True, False], ids=["with-its-own-trail", "without-one"])
def test_the_organization_trail_is_never_started_by_the_member_accounts_control(
    org: Organization, load_event: EventLoader, own_trail: bool
) -> None:
    """Only the management account may start or change its organization trail: the member's control starts
    a trail of the member's own, or says there is none, and never touches the organization's, although it
    is multi-Region and stopped."""
    event = load_event("config-cloudtrail-logging")
    org.seed(event)
    if not own_trail:
        aws(org, MEMBER, "cloudtrail").delete_trail(Name=SEEDED_TRAIL)
    organization_trail = create_trail(org, MANAGEMENT, REGION, "organization-audit", organization=True)
    show_organization_trail(MEMBER, "organization-audit")
    seen = aws(org, MEMBER, "cloudtrail").describe_trails()["trailList"]
    assert [t["IsOrganizationTrail"] for t in seen if t["TrailARN"] == organization_trail] == [True]

    [result] = org.replay([event], seed=False)

    assert is_logging(org, MANAGEMENT, REGION, "organization-audit") is False
    [remediate, _] = result.actions
    [entry] = remediations(org, event["id"])
    if own_trail:
        assert is_logging(org, MEMBER, REGION, SEEDED_TRAIL) is True
        assert (remediate.status, remediate.verified) == ("done", True)
        assert organization_trail not in entry.detail["changes"]["trails"]
    else:
        assert remediate.status == "failed"
        assert entry.detail["error"].startswith(
            f"account {MEMBER} has no CloudTrail trail of its own in {REGION}"
        )
