"""What must outlive the stack does: deleting or replacing the backbone keeps the audit trail, the account
register, the central model artifacts and the key that encrypts them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.template.templates import load_plain

# The ledger is the audit trail, the inventory the register of baselined accounts, the bucket holds the
# central registry's artifacts. Working state (claims, idempotency records) and queues go with the stack.
KEPT = ("LedgerTable", "AccountInventoryTable", "CentralArtifactBucket")


@pytest.fixture(scope="module")
def backbone() -> dict[str, Any]:
    return load_plain()


def keys_referenced(node: Any, keys: set[str]) -> set[str]:
    """The logical ids among `keys` that `node` refers to (Ref, GetAtt or inside a Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if node.get("Ref") in keys:
            found.add(node["Ref"])
        if isinstance(node.get("Fn::GetAtt"), list) and node["Fn::GetAtt"][0] in keys:
            found.add(node["Fn::GetAtt"][0])
        for value in node.values():
            found |= keys_referenced(value, keys)
    elif isinstance(node, list):
        for item in node:
            found |= keys_referenced(item, keys)
    elif isinstance(node, str):
        found |= {key for key in keys if f"${{{key}" in node}
    return found


def not_retained(template: dict[str, Any]) -> list[str]:
    """What must be kept but is not: the KEPT resources, and every KMS key one of them is encrypted with."""
    resources = template["Resources"]
    keys = {lid for lid, r in resources.items() if r["Type"] == "AWS::KMS::Key"}
    must = set(KEPT)
    for logical_id in KEPT:
        must |= keys_referenced(resources[logical_id].get("Properties", {}), keys)
    return sorted(
        logical_id
        for logical_id in must
        if resources[logical_id].get("DeletionPolicy") != "Retain"
        or resources[logical_id].get("UpdateReplacePolicy") != "Retain"
    )


def test_the_audit_trail_the_register_the_artifacts_and_their_key_are_kept(backbone: dict[str, Any]) -> None:
    resources = backbone["Resources"]
    # The key is found through the resources it encrypts, not listed: a second key would be found too.
    assert {"GovernanceKey"} <= keys_referenced([resources[lid] for lid in KEPT], {"GovernanceKey"}), (
        "the kept resources are expected to be encrypted with the backbone's key"
    )
    assert not_retained(backbone) == []


def test_the_ledger_cannot_be_deleted_by_mistake_and_can_be_restored(backbone: dict[str, Any]) -> None:
    ledger = backbone["Resources"]["LedgerTable"]["Properties"]
    assert ledger["DeletionProtectionEnabled"] is True
    assert ledger["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


@pytest.mark.parametrize("resource", ["GovernanceKey", "LedgerTable", "CentralArtifactBucket"])
@pytest.mark.parametrize("policy", ["DeletionPolicy", "UpdateReplacePolicy"])
def test_a_kept_resource_that_would_be_deleted_is_caught(
    backbone: dict[str, Any], resource: str, policy: str
) -> None:
    mutated = copy.deepcopy(backbone)
    mutated["Resources"][resource][policy] = "Delete"
    assert not_retained(mutated) == [resource]


def test_a_second_key_for_a_kept_resource_is_caught(backbone: dict[str, Any]) -> None:
    mutated = copy.deepcopy(backbone)
    mutated["Resources"]["BucketKey"] = {"Type": "AWS::KMS::Key", "Properties": {}}
    encryption = mutated["Resources"]["CentralArtifactBucket"]["Properties"]["BucketEncryption"]
    encryption["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] = {
        "Fn::GetAtt": ["BucketKey", "Arn"]
    }
    assert not_retained(mutated) == ["BucketKey"]


def test_the_artifact_bucket_keeps_every_version_and_no_abandoned_upload(backbone: dict[str, Any]) -> None:
    """A copy cut short (the function timed out mid-upload) leaves parts no listing shows, billed for ever;
    the artifacts themselves, every version of them, are the central registry's evidence."""
    bucket = backbone["Resources"]["CentralArtifactBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert [rule["AbortIncompleteMultipartUpload"] for rule in rules if rule["Status"] == "Enabled"] == [
        {"DaysAfterInitiation": 7}
    ]
    expiring = {"ExpirationInDays", "ExpirationDate", "NoncurrentVersionExpiration", "Transitions"}
    assert all(not expiring & set(rule) for rule in rules)
