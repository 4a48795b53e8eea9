"""The backbone in the China and AWS GovCloud (US) partitions: the ARNs it assumes and records, and the
console links it sends, carry the partition of the Region (arn:aws-us-gov:..., console.amazonaws-us-gov.com).
A role ARN in the wrong partition cannot be assumed, and a ledger entry under one is never found again."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from governance import sessions
from governance.naming import console_domain, partition
from governance.remediation import resources
from governance.settings import settings

MEMBER = "210987654321"


@pytest.fixture
def in_region(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def use(region: str) -> None:
        monkeypatch.setenv("AWS_REGION", region)
        monkeypatch.setenv("AWS_DEFAULT_REGION", region)
        settings.cache_clear()

    yield use
    settings.cache_clear()


@pytest.mark.parametrize(
    ("region", "expected", "domain"),
    [
        ("us-east-1", "aws", "aws.amazon.com"),
        ("eu-west-1", "aws", "aws.amazon.com"),
        ("cn-north-1", "aws-cn", "amazonaws.cn"),
        ("us-gov-west-1", "aws-us-gov", "amazonaws-us-gov.com"),
    ],
)
def test_each_region_has_its_partition_and_console(region: str, expected: str, domain: str) -> None:
    assert (partition(region), console_domain(region)) == (expected, domain)


def test_the_member_role_is_assumed_in_the_partition_of_the_backbones_region(
    in_region: Callable[[str], None],
) -> None:
    in_region("us-gov-west-1")
    assert sessions.role_arn_in(MEMBER) == f"arn:aws-us-gov:iam::{MEMBER}:role/GovernanceExecutionRole"
    in_region("us-east-1")
    assert sessions.role_arn_in(MEMBER) == f"arn:aws:iam::{MEMBER}:role/GovernanceExecutionRole"


def test_ledger_targets_and_console_links_carry_the_partition() -> None:
    assert (
        resources.target("AWS::S3::Bucket", "team-data", MEMBER, "cn-north-1") == "arn:aws-cn:s3:::team-data"
    )
    assert resources.target("AWS::EC2::SecurityGroup", "sg-1", MEMBER, "us-gov-west-1") == (
        f"arn:aws-us-gov:ec2:us-gov-west-1:{MEMBER}:security-group/sg-1"
    )
    assert resources.target("AWS::S3::Bucket", "team-data", MEMBER, "us-east-1") == "arn:aws:s3:::team-data"
    assert resources.console_link("AWS::S3::Bucket", "team-data", "us-gov-west-1", "rule") == (
        "https://us-gov-west-1.console.amazonaws-us-gov.com/s3/buckets/team-data?region=us-gov-west-1"
    )
    assert resources.config_rule_link("cn-north-1", "restricted-ssh").startswith(
        "https://cn-north-1.console.amazonaws.cn/config/home?region=cn-north-1#"
    )
