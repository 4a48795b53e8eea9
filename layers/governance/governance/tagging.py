"""Tags of SageMaker resources, every page of them."""

from __future__ import annotations

from typing import Any


def sagemaker_tags(sagemaker: Any, arn: str) -> list[dict[str, str]]:
    """Every tag of a SageMaker resource. ListTags answers at most 50 at a time: an organization's tag
    policies can put more on a group, and a `governance:*` tag on the second page must still count."""
    return [
        tag
        for page in sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn)
        for tag in page.get("Tags", [])
    ]
