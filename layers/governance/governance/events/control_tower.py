"""`aws.controltower` / `AWS Service Event via CloudTrail`: Control Tower's account lifecycle events."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models.event_bridge import EventBridgeModel
from pydantic import Field

from governance.events import MalformedEvent, OpenModel


class OrganizationalUnit(OpenModel):
    organizationalUnitName: str
    organizationalUnitId: str


class ManagedAccount(OpenModel):
    accountName: str
    # Absent when a creation failed, else an account id: a garbage id was waited on for ten role checks,
    # then reported as a missing role.
    accountId: str | None = Field(default=None, pattern=r"^[0-9]{12}$")


class ManagedAccountStatus(OpenModel):
    organizationalUnit: OrganizationalUnit
    account: ManagedAccount
    state: Literal["SUCCEEDED", "FAILED", "IN_PROGRESS"]
    message: str = ""


class ServiceEventDetails(OpenModel):
    createManagedAccountStatus: ManagedAccountStatus | None = None
    updateManagedAccountStatus: ManagedAccountStatus | None = None


class ControlTowerLifecycleDetail(OpenModel):
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
