"""What remediation knows about each resource type: a noun for humans, an ARN, a console link, its tags."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import boto3
from botocore.exceptions import ClientError

from governance.naming import console_domain, partition
from governance.remediation.controls import regional_client
from governance.tagging import sagemaker_tags

ACCOUNT = "AWS::::Account"

_NOUNS = {
    "AWS::S3::Bucket": "bucket",
    "AWS::SageMaker::NotebookInstance": "notebook",
    "AWS::SageMaker::EndpointConfig": "endpoint config",
    "AWS::EC2::SecurityGroup": "security group",
    "AWS::CloudTrail::Trail": "trail",
    ACCOUNT: "account",
}


def noun(resource_type: str) -> str:
    """`bucket` for AWS::S3::Bucket; unknown types fall back to their last part, in lower case."""
    return _NOUNS.get(resource_type) or resource_type.rsplit("::", 1)[-1].lower() or "resource"


def describe(resource_type: str, resource_id: str, account: str, region: str) -> str:
    """`bucket my-bucket in 210987654321`, or `account 210987654321 in us-east-1` for account-level rules."""
    if resource_type == ACCOUNT:
        return f"account {resource_id} in {region}"
    return f"{noun(resource_type)} {resource_id} in {account}"


def target(resource_type: str, resource_id: str, account: str, region: str) -> str:
    """The ARN (or, for account-level rules, the account id) the ledger records the decision against."""
    arn = f"arn:{partition(region)}"
    sagemaker = f"{arn}:sagemaker:{region}:{account}"
    arns = {
        "AWS::S3::Bucket": f"{arn}:s3:::{resource_id}",
        "AWS::SageMaker::NotebookInstance": f"{sagemaker}:notebook-instance/{resource_id}",
        "AWS::SageMaker::EndpointConfig": f"{sagemaker}:endpoint-config/{resource_id}",
        "AWS::EC2::SecurityGroup": f"{arn}:ec2:{region}:{account}:security-group/{resource_id}",
    }
    if resource_id.startswith("arn:"):
        return resource_id
    return arns.get(resource_type, resource_id)


def console_link(resource_type: str, resource_id: str, region: str, rule_name: str) -> str:
    """Where a human looks at the resource (after switching to its account in the console)."""
    name = quote(resource_id)
    console = f"https://{region}.console.{console_domain(region)}"
    sagemaker = f"{console}/sagemaker/home?region={region}#"
    ec2 = f"{console}/ec2/home?region={region}#"
    links = {
        "AWS::S3::Bucket": f"{console}/s3/buckets/{name}?region={region}",
        "AWS::SageMaker::NotebookInstance": f"{sagemaker}/notebook-instances/{name}",
        "AWS::SageMaker::EndpointConfig": f"{sagemaker}/endpointConfig/{name}",
        "AWS::EC2::SecurityGroup": f"{ec2}SecurityGroup:groupId={name}",
    }
    return links.get(resource_type) or config_rule_link(region, rule_name)


def config_rule_link(region: str, rule_name: str) -> str:
    console = f"https://{region}.console.{console_domain(region)}"
    return f"{console}/config/home?region={region}#/rules/details?configRuleName={quote(rule_name)}"


# IAM actions resource_tags calls, per resource type (GovernanceExecutionRole must grant them).
TAG_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "AWS::S3::Bucket": ("s3:GetBucketTagging",),
    "AWS::SageMaker::NotebookInstance": ("sagemaker:DescribeNotebookInstance", "sagemaker:ListTags"),
    "AWS::SageMaker::EndpointConfig": ("sagemaker:DescribeEndpointConfig", "sagemaker:ListTags"),
    "AWS::EC2::SecurityGroup": ("ec2:DescribeSecurityGroups",),
}


def _tag_dict(tags: list[dict[str, Any]]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in tags}


def resource_tags(
    session: boto3.Session, resource_type: str, resource_id: str, region: str
) -> dict[str, str]:
    """The resource's tags; empty for types that carry none here (account-level rules, unknown types)."""
    if resource_type == "AWS::S3::Bucket":
        try:
            found = regional_client(session, "s3", region).get_bucket_tagging(Bucket=resource_id)["TagSet"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchTagSet":
                return {}
            raise
        return _tag_dict(found)
    if resource_type == "AWS::SageMaker::NotebookInstance":
        sagemaker = regional_client(session, "sagemaker", region)
        arn = sagemaker.describe_notebook_instance(NotebookInstanceName=resource_id)["NotebookInstanceArn"]
        return _tag_dict(sagemaker_tags(sagemaker, arn))
    if resource_type == "AWS::SageMaker::EndpointConfig":
        sagemaker = regional_client(session, "sagemaker", region)
        arn = sagemaker.describe_endpoint_config(EndpointConfigName=resource_id)["EndpointConfigArn"]
        return _tag_dict(sagemaker_tags(sagemaker, arn))
    if resource_type == "AWS::EC2::SecurityGroup":
        groups = regional_client(session, "ec2", region).describe_security_groups(GroupIds=[resource_id])
        return _tag_dict(groups["SecurityGroups"][0].get("Tags", []))
    return {}
