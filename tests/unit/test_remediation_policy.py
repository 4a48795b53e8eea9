"""The remediation policy file: the packaged one is valid and covers every control of issue 3; rule names
match in every deployer's spelling; a bad entry fails with one line that names it; exemptions expire."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.remediation import policy as policy_module
from governance.remediation.controls import ACTIONS
from governance.remediation.policy import (
    POLICY_FILE_VARIABLE,
    PolicyError,
    base_rule_names,
    current_policy,
    packaged_policy_path,
    parse_policy,
)
from tests.conftest import EVENTS_DIR, read_event

CONTROL = """
[[control]]
id = "s3-bucket-public-access"
rules = ["s3-bucket-public-read-prohibited"]
resource_type = "AWS::S3::Bucket"
action = "block_bucket_public_access"
mode = "enforce"
severity = "HIGH"
note = "Block Public Access."
"""


@pytest.fixture(autouse=True)
def fresh_policy_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLICY_FILE_VARIABLE, raising=False)
    policy_module.reset_caches_for_tests()


def policy_text(*extra: str, header: str = 'version = 1\nunknown_rule_severity = "MEDIUM"\n') -> str:
    return header + CONTROL + "\n".join(extra)


# --------------------------------------------------------------------------- the packaged policy


def test_the_packaged_policy_is_valid_and_ships_in_the_layer_package() -> None:
    path = packaged_policy_path()
    assert path.name == "policy.toml"
    assert path.parent.name == "remediation"
    assert path.parent.parent.name == "governance"
    assert Path(path).is_file()
    assert current_policy().version == 1


@pytest.mark.parametrize(
    ("event_file", "control_id", "action", "mode"),
    [
        ("config-s3-public-read", "s3-bucket-public-access", "block_bucket_public_access", "enforce"),
        (
            "config-s3-public-write-control-tower",
            "s3-bucket-public-access",
            "block_bucket_public_access",
            "enforce",
        ),
        (
            "config-s3-bucket-level-public-access-securityhub",
            "s3-bucket-public-access",
            "block_bucket_public_access",
            "enforce",
        ),
        (
            "config-s3-default-encryption-conformance-pack",
            "s3-bucket-default-encryption",
            "enable_bucket_default_encryption",
            "enforce",
        ),
        ("config-s3-tls-required", "s3-bucket-tls-only", "require_tls_for_bucket", "enforce"),
        (
            "config-notebook-direct-internet",
            "sagemaker-notebook-exposure",
            "stop_notebook_instance",
            "enforce",
        ),
        ("config-notebook-root-access", "sagemaker-notebook-exposure", "stop_notebook_instance", "enforce"),
        ("config-endpoint-config-kms", "sagemaker-endpoint-config-kms", "none", "notify-only"),
        (
            "config-ebs-encryption-default",
            "ebs-encryption-by-default",
            "enable_ebs_encryption_by_default",
            "enforce",
        ),
        ("config-security-group-ssh", "security-group-open-ssh", "revoke_open_ingress", "enforce"),
        (
            "config-security-group-open-ports",
            "security-group-unauthorized-ports",
            "revoke_open_ingress",
            "enforce",
        ),
        ("config-cloudtrail-logging", "cloudtrail-logging", "start_trail_logging", "enforce"),
    ],
)
def test_every_control_of_the_issue_has_an_entry_for_its_sample_event(
    event_file: str, control_id: str, action: str, mode: str
) -> None:
    detail = read_event(event_file)["detail"]
    control = current_policy().control_for(detail["configRuleName"])
    assert control is not None
    assert (control.id, control.action, control.mode) == (control_id, action, mode)
    assert control.resource_type == detail["resourceType"]


def test_the_common_ports_control_removes_exactly_what_its_managed_rule_flags() -> None:
    # restricted-common-ports (RESTRICTED_INCOMING_TRAFFIC) flags blockedPort1-5 by default, as moto's copy
    # of the managed-rule catalogue lists them; 22 is restricted-ssh's. A port the rule does not flag,
    # removed here, would be a change no finding asked for.
    from moto.config.models import MANAGED_RULES_CONSTRAINTS

    parameters = MANAGED_RULES_CONSTRAINTS["RESTRICTED_INCOMING_TRAFFIC"]["Parameters"]
    defaults = {p["Default"] for p in parameters if p["Name"].startswith("blockedPort") and "Default" in p}
    control = current_policy().control_for("restricted-common-ports")
    assert control is not None
    assert defaults == {"20", "21", "3389", "3306", "4333"}
    assert set(control.parameters["blocked_tcp_ports"]) == defaults


def test_the_endpoint_config_control_is_high_severity_notify_only() -> None:
    control = current_policy().control_for("sagemaker-endpoint-configuration-kms-key-configured")
    assert control is not None
    assert (control.mode, control.severity) == ("notify-only", "HIGH")


def test_a_rule_no_entry_covers_has_no_control() -> None:
    rule = read_event("config-unknown-rule")["detail"]["configRuleName"]
    assert current_policy().control_for(rule) is None
    assert current_policy().unknown_rule_severity == "MEDIUM"


def test_every_sample_config_event_rule_is_either_covered_or_the_unknown_rule() -> None:
    uncovered = {
        path.name
        for path in EVENTS_DIR.glob("config-*.json")
        if current_policy().control_for(read_event(path.name)["detail"]["configRuleName"]) is None
    }
    assert uncovered == {"config-unknown-rule.json"}


def test_the_commented_example_exemption_is_a_valid_exemption() -> None:
    text = packaged_policy_path().read_text(encoding="utf-8")
    example = text[text.index("# [[exemption]]") :]
    uncommented = "\n".join(line.removeprefix("# ") for line in example.splitlines())

    policy = parse_policy(text + "\n" + uncommented)

    [exemption] = policy.exemptions
    assert exemption.controls == ["s3-bucket-public-access"]
    assert exemption.owner and exemption.reason
    assert current_policy().exemptions == []  # commented out in the shipped file


# --------------------------------------------------------------------------- rule-name matching


@pytest.mark.parametrize(
    "deployed_name",
    [
        "s3-bucket-public-read-prohibited",
        "AWSControlTower_AWS-GR_S3_BUCKET_PUBLIC_READ_PROHIBITED",
        "securityhub-s3-bucket-public-read-prohibited-a1b2c3",
        "s3-bucket-public-read-prohibited-conformance-pack-x7k2m9q1",
        "OrgConfigRule-s3-bucket-public-read-prohibited-h7f2k1",
    ],
)
def test_one_entry_recognises_the_rule_whoever_deployed_it(deployed_name: str) -> None:
    control = current_policy().control_for(deployed_name)
    assert control is not None
    assert control.id == "s3-bucket-public-access"


@pytest.mark.parametrize(
    "name",
    [
        "s3-bucket-public-read-prohibited-extra",
        "my-s3-bucket-public-read-prohibited",
        "securityhub-s3-bucket-public-read-prohibited",  # no suffix: not Security Hub's naming
        "AWSControlTower_AWS-GR_S3_BUCKET_PUBLIC_READ",
    ],
)
def test_names_that_only_resemble_a_rule_do_not_match(name: str) -> None:
    assert current_policy().control_for(name) is None


_RULE_NAMES = st.from_regex(r"[a-z][a-z0-9]{1,8}(-[a-z0-9]{1,8}){1,5}", fullmatch=True)
_SUFFIXES = st.from_regex(r"[a-z0-9]{4,10}", fullmatch=True)


@given(rule=_RULE_NAMES, suffix=_SUFFIXES)
def test_every_deployer_spelling_leads_back_to_the_managed_name(rule: str, suffix: str) -> None:
    for deployed in (
        rule,
        f"AWSControlTower_AWS-GR_{rule.upper().replace('-', '_')}",
        f"securityhub-{rule}-{suffix}",
        f"{rule}-conformance-pack-{suffix}",
    ):
        assert base_rule_names(deployed)[-1] == rule


def test_patterns_in_rules_match_with_wildcards() -> None:
    policy = parse_policy(policy_text().replace('"s3-bucket-public-read-prohibited"', '"s3-bucket-public-*"'))
    assert policy.control_for("AWSControlTower_AWS-GR_S3_BUCKET_PUBLIC_WRITE_PROHIBITED") is not None
    assert policy.control_for("s3-bucket-ssl-requests-only") is None


# --------------------------------------------------------------------------- bad files: one line, entry named


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('mode = "enforce"', 'mode = "sometimes"'),
            "control 's3-bucket-public-access' (#1): mode: Input should be",
        ),
        (
            ('action = "block_bucket_public_access"', 'action = "delete_bucket"'),
            "control 's3-bucket-public-access' (#1): unknown action 'delete_bucket'",
        ),
        (
            ('note = "Block Public Access."', ""),
            "control 's3-bucket-public-access' (#1): note: Field required",
        ),
        (('severity = "HIGH"', 'severity = "URGENT"'), "severity: Input should be 'CRITICAL', 'HIGH'"),
        (('mode = "enforce"', 'mode = "enforce"\nmodes = "x"'), "modes: Extra inputs are not permitted"),
        (
            ('resource_type = "AWS::S3::Bucket"', 'resource_type = "AWS::EC2::SecurityGroup"'),
            "action 'block_bucket_public_access' acts on AWS::S3::Bucket, not AWS::EC2::SecurityGroup",
        ),
        (
            ('action = "block_bucket_public_access"', 'action = "none"'),
            "action 'none' changes nothing, so mode must be 'notify-only'",
        ),
        (
            ('rules = ["s3-bucket-public-read-prohibited"]', "rules = []"),
            "rules: List should have at least 1 item",
        ),
        (("version = 1", "version = 2"), "policy: version: Input should be 1"),
    ],
)
def test_a_bad_entry_is_named_in_a_one_line_error(change: tuple[str, str], expected: str) -> None:
    text = policy_text().replace(*change)
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "policy.toml")
    message = str(raised.value)
    assert message.startswith("remediation policy policy.toml: ")
    assert expected in message
    assert "\n" not in message


def test_bad_action_parameters_name_the_entry_and_the_parameter() -> None:
    text = policy_text(
        """
[[control]]
id = "security-group-open-ssh"
rules = ["restricted-ssh"]
resource_type = "AWS::EC2::SecurityGroup"
action = "revoke_open_ingress"
mode = "enforce"
severity = "HIGH"
note = "SSH."

[control.parameters]
blocked_tcp_ports = ["ssh"]
"""
    )
    with pytest.raises(PolicyError, match=r"control 'security-group-open-ssh' \(#2\): .*'ssh' is not a port"):
        parse_policy(text)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (CONTROL, "control id 's3-bucket-public-access' is used twice"),
        (
            CONTROL.replace('id = "s3-bucket-public-access"', 'id = "another"'),
            "rule 's3-bucket-public-read-prohibited' is in control 's3-bucket-public-access' and in control "
            "'another'",
        ),
        (
            '[[exemption]]\naccounts = ["210987654321"]\ncontrols = ["s3-public"]\nreason = "r"\n'
            'owner = "o"\nexpires = 2026-12-31',
            "exemption #1 (owner o) names unknown control(s) ['s3-public']",
        ),
        (
            '[[exemption]]\nreason = "r"\nowner = "team@example.com"\nexpires = 2026-12-31',
            "exemption 'team@example.com' (#1): give accounts or resources",
        ),
        (
            '[[exemption]]\naccounts = ["2109"]\nreason = "r"\nowner = "o"\nexpires = 2026-12-31\n'
            '[[exemption]]\naccounts = ["team-account"]\nreason = "r"\nowner = "p"\nexpires = 2026-12-31',
            "exemption 'p' (#2): accounts: Value error, 'team-account' is not an account id",
        ),
        (
            '[[exemption]]\naccounts = ["210987654321"]\nowner = "o"\nexpires = 2026-12-31',
            "exemption 'o' (#1): reason: Field required",
        ),
        (
            '[[exemption]]\naccounts = ["210987654321"]\nreason = "r"\nowner = "o"\nexpires = "next year"',
            "exemption 'o' (#1): expires: Input should be a valid date",
        ),
    ],
)
def test_inconsistent_policies_are_rejected(extra: str, expected: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(policy_text(extra))
    assert expected.replace("Value error, ", "") in str(raised.value)


def test_a_file_that_is_not_toml_says_where() -> None:
    with pytest.raises(PolicyError, match=r"remediation policy p\.toml: not valid TOML: .*line 2"):
        parse_policy("version = 1\n[[control]\n", "p.toml")


def test_a_bad_policy_file_fails_when_first_used_and_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "policy.toml"
    bad.write_text(policy_text().replace('mode = "enforce"', 'mode = "always"'), encoding="utf-8")
    monkeypatch.setenv(POLICY_FILE_VARIABLE, str(bad))

    with pytest.raises(
        PolicyError, match=re.escape(f"remediation policy {bad}: control 's3-bucket-public-access'")
    ):
        current_policy()


def test_a_missing_policy_file_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_FILE_VARIABLE, str(tmp_path / "absent.toml"))
    with pytest.raises(PolicyError, match=r"absent\.toml: cannot read"):
        current_policy()


def test_the_policy_is_read_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(policy_text(), encoding="utf-8")
    monkeypatch.setenv(POLICY_FILE_VARIABLE, str(path))
    first = current_policy()
    path.write_text("not toml at all [", encoding="utf-8")

    assert current_policy() is first
    policy_module.reset_caches_for_tests()
    with pytest.raises(PolicyError):
        current_policy()


# --------------------------------------------------------------------------- exemptions


EXEMPTIONS = """
[[exemption]]
accounts = ["2109876543*"]
resources = ["team-churn-public-*"]
controls = ["s3-bucket-public-access"]
reason = "Public website reviewed in SEC-1"
owner = "churn-team@example.com"
expires = 2026-12-31

[[exemption]]
accounts = ["222222222222"]
reason = "Sandbox, torn down in January"
owner = "platform@example.com"
expires = 2026-01-15
"""


def test_an_exemption_applies_to_its_accounts_resources_and_controls_until_it_expires() -> None:
    policy = parse_policy(policy_text(EXEMPTIONS))

    def exempt(account: str, resource: str, control: str | None, day: date) -> str | None:
        found = policy.exemption_for(account=account, resource_id=resource, control_id=control, today=day)
        return found.owner if found else None

    in_force = date(2026, 11, 20)
    assert exempt("210987654321", "team-churn-public-site", "s3-bucket-public-access", in_force) == (
        "churn-team@example.com"
    )
    assert exempt("210987654321", "team-churn-public-site", "s3-bucket-public-access", date(2026, 12, 31))
    assert (
        exempt("210987654321", "team-churn-public-site", "s3-bucket-public-access", date(2027, 1, 1)) is None
    )
    assert exempt("210987654321", "team-churn-raw", "s3-bucket-public-access", in_force) is None
    assert exempt("333333333333", "team-churn-public-site", "s3-bucket-public-access", in_force) is None
    assert exempt("210987654321", "team-churn-public-site", "security-group-open-ssh", in_force) is None
    # An account-wide exemption without controls covers every control, and rules no control covers.
    assert exempt("222222222222", "anything", None, date(2026, 1, 10)) == "platform@example.com"
    assert exempt("222222222222", "anything", None, date(2026, 1, 16)) is None


def test_every_action_is_documented_in_the_policy_file_header() -> None:
    header = packaged_policy_path().read_text(encoding="utf-8").split("version = 1")[0]
    for name in [*ACTIONS, "none"]:
        assert name in header
