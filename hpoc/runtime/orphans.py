"""Placement groups left behind by a trial that Tune ended.

A multi-worker trial's Ray Train run reserves its workers in a placement group that the
run's controller actor creates. Tune ends a trial early (a scheduler's stop, a `stop`
criterion) by killing the trial's actor, and the controller with it. Ray frees a group
only when both its creator actor and its job are gone, so the group outlives the trial
while the study (the job) goes on; Train's own cleaner asks Ray's dashboard, which hpoc
does not start. The workers' CPUs and GPUs stay reserved and the next trial waits for
them forever. The driver removes such groups itself (`release`); trials start their Train
runs without Train's cleaner, an idle process per run that could never act
(`trial.train_run_class`).
"""

from __future__ import annotations

from typing import Any

_NIL_ACTOR = b"\xff" * 16
_LIVE_STATES = ("PENDING", "PREPARED", "CREATED", "RESCHEDULING")


def orphaned(table: list[Any], job: bytes) -> list[bytes]:
    """Ids of the groups of `job` in `table` (GCS `PlacementGroupTableData`) whose creator
    actor is dead: never a detached group, nor one the driver made (no creator actor: Tune's
    own), nor another job's (a cluster the study shares)."""
    from ray.core.generated import gcs_pb2

    states = gcs_pb2.PlacementGroupTableData.PlacementGroupState
    live = {states.Value(name) for name in _LIVE_STATES}
    out = []
    for pg in table:
        actor = bytes(pg.creator_actor_id)
        if (pg.state in live and not pg.is_detached and pg.creator_actor_dead
                and bytes(pg.creator_job_id) == job and actor and actor != _NIL_ACTOR[: len(actor)]):
            out.append(bytes(pg.placement_group_id))
    return out


def release() -> int:
    """Remove the orphaned groups of this Ray cluster; how many."""
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    accessor = state._connect_and_get_accessor()
    table = [gcs_pb2.PlacementGroupTableData.FromString(raw) for raw in accessor.get_placement_group_table()]
    removed = 0
    job = ray.get_runtime_context().get_job_id()
    for pg_id in orphaned(table, bytes.fromhex(job)):
        try:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(pg_id)))
            removed += 1
        except Exception:  # noqa: BLE001 - removed meanwhile, or the GCS is going away
            pass
    return removed

