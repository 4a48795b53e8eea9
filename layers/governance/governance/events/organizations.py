"""`aws.organizations` / `AWS API Call via CloudTrail`: an account closed or removed."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models.event_bridge import EventBridgeModel
from pydantic import Field

from governance.events import MalformedEvent, OpenModel


class AccountRequestParameters(OpenModel):
    accountId: str = Field(pattern=r"^[0-9]{12}$")


class OrganizationsAccountCallDetail(OpenModel):
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
