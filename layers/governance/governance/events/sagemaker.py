"""`aws.sagemaker` / `SageMaker Model Package State Change`: a model registry's approvals."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.utilities.parser.models.event_bridge import EventBridgeModel
from pydantic import Field

from governance.events import OpenModel

ApprovalStatus = Literal["Approved", "Rejected", "PendingManualApproval"]


class ModelPackageStateChangeDetail(OpenModel):
    # [0-9], not \d: in these patterns \d also matches other scripts' digits, such as full-width ones.
    ModelPackageArn: str = Field(
        pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:model-package/.+/[0-9]+$"
    )
    ModelPackageGroupName: str = Field(min_length=1)
    ModelPackageVersion: int = Field(ge=1)
    ModelApprovalStatus: ApprovalStatus


class ModelPackageStateChange(EventBridgeModel):
    """`aws.sagemaker` / `SageMaker Model Package State Change`."""

    detail: ModelPackageStateChangeDetail  # type: ignore[assignment]
