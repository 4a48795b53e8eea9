"""The names of the business metrics the backbone emits with Powertools Metrics (CloudWatch EMF, namespace
POWERTOOLS_METRICS_NAMESPACE, dimension `service`). The handlers emit them and template.yaml's dashboard
plots them; tests/template/test_observability.py keeps the two in step."""

from __future__ import annotations

# Model promotion (team registry -> central registry).
MODELS_REPLICATED = "ModelsReplicated"
MODELS_STOPPED_AT_GATE = "ModelsStoppedAtGate"
MODEL_CARDS_WRITTEN = "ModelCardsWritten"

# Model deployment (central approval -> deployment pipeline).
DEPLOYMENTS_STARTED = "DeploymentsStarted"
DEPLOYMENTS_SUCCEEDED = "DeploymentsSucceeded"
DEPLOYMENTS_FAILED = "DeploymentsFailed"
MODELS_REJECTED = "ModelsRejected"

# Account baseline.
ACCOUNTS_BASELINED = "AccountsBaselined"
ACCOUNT_CREATIONS_FAILED = "AccountCreationsFailed"

# Config remediation: one metric per decision outcome (governance.remediation.engine.Outcome).
REMEDIATION_OUTCOMES = {
    "done": "Remediated",
    "exempt": "RemediationsExempted",
    "dry-run": "RemediationsDryRun",
    "failed": "RemediationsFailed",
    "notify-only": "RemediationsNotifyOnly",
    "skipped": "RemediationsSkipped",
    "ignored": "RemediationsIgnored",
}

# Any workflow that ended in its catch-all (RecordFailureFunction), whatever the flow.
WORKFLOWS_FAILED = "WorkflowsFailed"

# The forwarding dead-letter queues of the member accounts (governance.forwarding), read on a schedule:
# events kept there never reached the governance bus. Not decisions: each reading is a level, not a count.
FORWARDING_DEAD_LETTERS = "ForwardingDeadLetters"
FORWARDING_QUEUES_UNREADABLE = "ForwardingQueuesUnreadable"
FORWARDING_QUEUES_WATCHED = "ForwardingQueuesWatched"
FORWARDING_EVENTS_LOST = "ForwardingEventsLost"

FORWARDING = frozenset(
    {FORWARDING_DEAD_LETTERS, FORWARDING_EVENTS_LOST, FORWARDING_QUEUES_UNREADABLE, FORWARDING_QUEUES_WATCHED}
)

ALL = frozenset(
    {
        MODELS_REPLICATED,
        MODELS_STOPPED_AT_GATE,
        MODEL_CARDS_WRITTEN,
        DEPLOYMENTS_STARTED,
        DEPLOYMENTS_SUCCEEDED,
        DEPLOYMENTS_FAILED,
        MODELS_REJECTED,
        ACCOUNTS_BASELINED,
        ACCOUNT_CREATIONS_FAILED,
        *REMEDIATION_OUTCOMES.values(),
        WORKFLOWS_FAILED,
    }
)
