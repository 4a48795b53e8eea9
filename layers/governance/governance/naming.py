"""Names the flows agree on: a central group per source group and account, a card per central version."""

from __future__ import annotations

import hashlib
import re

_MAX_NAME = 63  # SageMaker group and card names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
# Hex digits of the digest a shortened name ends with: 2**32 names per prefix before two are likely to meet.
_DIGEST_CHARS = 8


def _sagemaker_name(raw: str) -> str:
    return re.sub(r"[^a-zA-Z0-9-]+", "-", raw).strip("-")


def _fitted(name: str, identity: str, limit: int = _MAX_NAME) -> str:
    """`name` as it is when it fits; else a prefix of it and a digest of `identity`, so two names that differ
    only in the part cut off stay two names (a plain cut would make them one)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(identity.encode()).hexdigest()[:_DIGEST_CHARS]
    return f"{name[: limit - len(digest) - 1].rstrip('-')}-{digest}"


def central_group_name(source_account: str, source_group: str) -> str:
    """`210987654321-churn-prediction`: one central group per source group and account. A name longer than
    SageMaker allows keeps its first 54 characters and ends with a digest of `<account>/<group>`."""
    return _fitted(_sagemaker_name(f"{source_account}-{source_group}"), f"{source_account}/{source_group}")


def model_card_name(central_group: str, central_version: int) -> str:
    """`210987654321-churn-prediction-v1`: one card per central model version. When the group's name leaves
    no room for `-v<N>`, it is shortened the same way, with a digest of the whole group name."""
    suffix = f"-v{central_version}"
    group = _sagemaker_name(central_group)
    return _fitted(group, central_group, _MAX_NAME - len(suffix)) + suffix


# The partitions other than `aws`, by the prefix of their Region names (China, AWS GovCloud (US)).
_PARTITIONS = (("cn-", "aws-cn", "amazonaws.cn"), ("us-gov-", "aws-us-gov", "amazonaws-us-gov.com"))


def partition(region: str) -> str:
    """`aws`, or `aws-cn` / `aws-us-gov` for those Regions: the second field of every ARN there."""
    return next((name for prefix, name, _ in _PARTITIONS if region.startswith(prefix)), "aws")


def console_domain(region: str) -> str:
    """Where the AWS Management Console of the Region's partition is served."""
    return next((domain for prefix, _, domain in _PARTITIONS if region.startswith(prefix)), "aws.amazon.com")
