"""`aws.config` / `Config Rules Compliance Change`: AWS Config evaluations."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aws_lambda_powertools.utilities.parser.models.event_bridge import EventBridgeModel
from pydantic import Field

from governance.events import OpenModel


class EvaluationResultQualifier(OpenModel):
    configRuleName: str
    resourceType: str
    resourceId: str


class EvaluationResultIdentifier(OpenModel):
    evaluationResultQualifier: EvaluationResultQualifier
    orderingTimestamp: datetime


class EvaluationResult(OpenModel):
    evaluationResultIdentifier: EvaluationResultIdentifier
    complianceType: Literal["COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE", "INSUFFICIENT_DATA"]
    annotation: str | None = None


class ConfigComplianceChangeDetail(OpenModel):
    resourceId: str = Field(min_length=1)
    resourceType: str = Field(min_length=1)
    configRuleName: str = Field(min_length=1)
    awsAccountId: str = Field(pattern=r"^[0-9]{12}$")
    awsRegion: str = Field(min_length=1)
    messageType: str
    configRuleARN: str | None = None
    newEvaluationResult: EvaluationResult


class ConfigComplianceChange(EventBridgeModel):
    """`aws.config` / `Config Rules Compliance Change`."""

    detail: ConfigComplianceChangeDetail  # type: ignore[assignment]
