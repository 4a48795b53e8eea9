"""Pydantic models of the governance events, on Powertools' EventBridge model."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from aws_lambda_powertools.utilities.parser.models.event_bridge import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from governance.errors import MalformedEvent as MalformedEvent  # re-exported: raised by parse_event


class _Open(BaseModel):
    """AWS adds fields over time: keep what we do not model instead of rejecting it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --- SageMaker model registry -------------------------------------------------------------------

ApprovalStatus = Literal["Approved", "Rejected", "PendingManualApproval"]


class ModelPackageStateChangeDetail(_Open):
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


# --- AWS Config -----------------------------------------------------------------------------------


class EvaluationResultQualifier(_Open):
    configRuleName: str
    resourceType: str
    resourceId: str


class EvaluationResultIdentifier(_Open):
    evaluationResultQualifier: EvaluationResultQualifier
    orderingTimestamp: datetime


class EvaluationResult(_Open):
    evaluationResultIdentifier: EvaluationResultIdentifier
    complianceType: Literal["COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE", "INSUFFICIENT_DATA"]
    annotation: str | None = None


class ConfigComplianceChangeDetail(_Open):
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


# --- Control Tower ------------------------------------------------------------------------------


class OrganizationalUnit(_Open):
    organizationalUnitName: str
    organizationalUnitId: str


class ManagedAccount(_Open):
    accountName: str
    # Absent when a creation failed, else an account id: a garbage id was waited on for ten role checks,
    # then reported as a missing role.
    accountId: str | None = Field(default=None, pattern=r"^[0-9]{12}$")


class ManagedAccountStatus(_Open):
    organizationalUnit: OrganizationalUnit
    account: ManagedAccount
    state: Literal["SUCCEEDED", "FAILED", "IN_PROGRESS"]
    message: str = ""


class ServiceEventDetails(_Open):
    createManagedAccountStatus: ManagedAccountStatus | None = None
    updateManagedAccountStatus: ManagedAccountStatus | None = None


class ControlTowerLifecycleDetail(_Open):
    eventName: Literal["CreateManagedAccount", "UpdateManagedAccount"]
    serviceEventDetails: ServiceEventDetails

    @property
    def status(self) -> ManagedAccountStatus:
        details = self.serviceEventDetails
        found = details.createManagedAccountStatus or details.updateManagedAccountStatus
        if found is None:  # validated in ControlTowerLifecycle; kept for the type checker
            raise MalformedEvent("detail.serviceEventDetails has no managed account status")
        return found


class ControlTowerLifecycle(EventBridgeModel):
    """`aws.controltower` / `AWS Service Event via CloudTrail`: CreateManagedAccount, UpdateManagedAccount."""

    detail: ControlTowerLifecycleDetail  # type: ignore[assignment]

    def model_post_init(self, __context: Any) -> None:
        details = self.detail.serviceEventDetails
        expected = (
            "createManagedAccountStatus"
            if self.detail.eventName == "CreateManagedAccount"
            else ("updateManagedAccountStatus")
        )
        if getattr(details, expected) is None:
            raise MalformedEvent(
                f"detail.serviceEventDetails.{expected}: missing for {self.detail.eventName}"
            )
        status = self.detail.status
        if status.state == "SUCCEEDED" and not status.account.accountId:
            raise MalformedEvent(f"detail.serviceEventDetails.{expected}.account.accountId: missing")


# --- AWS Organizations (CloudTrail) ---------------------------------------------------------------


class AccountRequestParameters(_Open):
    accountId: str = Field(pattern=r"^[0-9]{12}$")


class OrganizationsAccountCallDetail(_Open):
    eventSource: Literal["organizations.amazonaws.com"]
    eventName: Literal["CloseAccount", "RemoveAccountFromOrganization"]
    eventID: str = Field(min_length=1)
    # Present only when Organizations refused the call: then nothing happened to the account.
    errorCode: str | None = None
    # CloudTrail may leave the parameters out of a refused call; a successful one always names the account.
    requestParameters: AccountRequestParameters | None = None


class OrganizationsAccountCall(EventBridgeModel):
    """`aws.organizations` / `AWS API Call via CloudTrail`: CloseAccount, RemoveAccountFromOrganization,
    called in the management account and recorded in us-east-1."""

    detail: OrganizationsAccountCallDetail  # type: ignore[assignment]

    def model_post_init(self, __context: Any) -> None:
        if self.detail.errorCode is None and self.detail.requestParameters is None:
            raise MalformedEvent(f"detail.requestParameters.accountId: missing for {self.detail.eventName}")


Model = TypeVar("Model", bound=BaseModel)


def describe_validation_error(error: ValidationError) -> str:
    """One line naming every field that is wrong: `detail.ModelPackageArn: Field required; ...`."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if not where and item["type"] == "value_error":
            # A whole-event check (model_post_init) already names its field: no `event: Value error, `.
            problems.append(str(item.get("ctx", {}).get("error", item["msg"])))
            continue
        problems.append(f"{where or 'event'}: {item['msg']}")
    return "; ".join(problems)


def parse_event(event: Any, model: type[Model]) -> Model:
    """Validate `event` against `model`, or raise MalformedEvent with a one-line reason."""
    if not isinstance(event, dict):
        raise MalformedEvent(f"{model.__name__}: expected a JSON object, got {type(event).__name__}")
    try:
        return model.model_validate(event)
    except ValidationError as error:
        raise MalformedEvent(f"{model.__name__} is malformed: {describe_validation_error(error)}") from None
