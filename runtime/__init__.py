"""treadle.runtime: durable workflows whose specialty is parallel execution.

Write a workflow as a generator function that yields operations::

    from treadle.runtime import Runtime, activity, workflow

    @activity
    def check_inventory(items): ...

    @workflow
    def enrich_order(ctx, order):
        inventory, tax = yield ctx.all([ctx.run(check_inventory, order["items"]),
                                        ctx.run(compute_tax, order["total"])])
        return {"inventory": inventory, "tax": tax}

    with Runtime("./treadle-data") as rt:
        print(rt.start(enrich_order, order, run_id="order-42").result(timeout=30))
"""

from ._clock import Clock, SystemClock
from ._durations import Duration, parse_duration
from ._errors import (
    ActivityError,
    ActivityTimeoutError,
    AllBranchesFailedError,
    BranchTopologyChangedError,
    CancelledError,
    ExecutorUnavailableError,
    JournalCorruptionError,
    NonDeterminismError,
    NotAnOperationError,
    PayloadTooLargeError,
    RunFinishedError,
    RunNotFoundError,
    RunParkedError,
    SerializationError,
    SignalWaitConflictError,
    StorageFullError,
    StoreLockedError,
    TreadleError,
    WorkerLostError,
    WorkflowFailedError,
)
from ._executors import Executor, ThreadExecutor
from ._messages import Cancel, Signal, StartRun
from ._ops import Context, Operation
from ._processes import ProcessExecutor
from ._ray import RayExecutor
from ._records import PENDING, RunStatus, RunSummary, Settled, StepRecord
from ._registry import ActivityContext, Registry, Retry, activity, default_registry, workflow
from ._runtime import RunHandle, Runtime

__all__ = [
    "PENDING",
    "ActivityContext",
    "ActivityError",
    "ActivityTimeoutError",
    "AllBranchesFailedError",
    "BranchTopologyChangedError",
    "Cancel",
    "CancelledError",
    "Clock",
    "Context",
    "Duration",
    "Executor",
    "ExecutorUnavailableError",
    "JournalCorruptionError",
    "NonDeterminismError",
    "NotAnOperationError",
    "Operation",
    "PayloadTooLargeError",
    "ProcessExecutor",
    "RayExecutor",
    "Registry",
    "Retry",
    "RunFinishedError",
    "RunHandle",
    "RunNotFoundError",
    "RunParkedError",
    "RunStatus",
    "RunSummary",
    "Runtime",
    "SerializationError",
    "Settled",
    "Signal",
    "SignalWaitConflictError",
    "StartRun",
    "StepRecord",
    "StorageFullError",
    "StoreLockedError",
    "SystemClock",
    "ThreadExecutor",
    "TreadleError",
    "WorkerLostError",
    "WorkflowFailedError",
    "activity",
    "default_registry",
    "parse_duration",
    "workflow",
]
