"""A trial's finish, and a running trial's reports, each as one PostgreSQL statement.

Finishing a trial writes to four tables (its state, its last reports, its user attributes,
its values), and a flush of reports to three (the parameters held for it, the reports, the
attributes) after a read of its state. Sent one by one inside a transaction, that is five or
six round trips with the BEGIN and COMMIT; on PostgreSQL a data-modifying WITH query does it
all in one statement, atomic by itself (sent with autocommit: lean_study_attrs.py): the rows
go as arrays, unnested in the statement, so its text is the same whatever their number and
the server prepares it once. The guards are those of the statements they replace:

- finish: the UPDATE touches the trial only while it is RUNNING; every INSERT takes its
  trial id from that UPDATE's RETURNING, so a guard that does not hold writes nothing, and
  the statement answers how many trials it finished (0 or 1);
- reports: the INSERTs take the trial id from the trial's row only while it is unfinished;
  the statement answers the trial's state as it read it (no row: no such trial), which the
  caller checks as Optuna does, nothing having been written where it raises.

Values are stored as Optuna stores them (inf and NaN as their kind with a NULL value,
attributes as JSON text), so Optuna and the dashboard read them back alike. A step or an
objective value stored before raises IntegrityError, as the separate INSERTs did.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

import sqlalchemy
from optuna.distributions import distribution_to_json
from optuna.storages._rdb import models as _models
from optuna.trial import TrialState

_ATTRS = """attrs AS (
    INSERT INTO trial_user_attributes (trial_id, key, value_json)
    SELECT target.trial_id, a.key, a.value_json
    FROM target, unnest(CAST(:attr_keys AS text[]), CAST(:attr_jsons AS text[]))
        AS a(key, value_json)
    ON CONFLICT (trial_id, key) DO UPDATE SET value_json = EXCLUDED.value_json
)"""
_REPORTS = """reports AS (
    INSERT INTO trial_intermediate_values
        (trial_id, step, intermediate_value, intermediate_value_type)
    SELECT target.trial_id, r.step, r.value, CAST(r.kind AS trialintermediatevaluetype)
    FROM target, unnest(CAST(:steps AS integer[]), CAST(:report_values AS float8[]),
                        CAST(:report_kinds AS text[])) AS r(step, value, kind)
)"""

FINISH = sqlalchemy.text(f"""
WITH target AS (
    UPDATE trials SET state = CAST(:state AS trialstate), datetime_complete = :finished
    WHERE trial_id = :trial_id AND state = 'RUNNING'
    RETURNING trial_id
), {_REPORTS}, {_ATTRS}, objective_values AS (
    INSERT INTO trial_values (trial_id, objective, value, value_type)
    SELECT target.trial_id, v.objective, v.value, CAST(v.kind AS trialvaluetype)
    FROM target, unnest(CAST(:objectives AS integer[]), CAST(:values AS float8[]),
                        CAST(:value_kinds AS text[])) AS v(objective, value, kind)
)
SELECT count(*) FROM target""")

REPORTS = sqlalchemy.text(f"""
WITH found AS (
    SELECT trial_id, state FROM trials WHERE trial_id = :trial_id
), target AS (
    SELECT trial_id FROM found WHERE state IN ('RUNNING', 'WAITING')
), params AS (
    INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)
    SELECT target.trial_id, p.name, p.value, p.distribution
    FROM target, unnest(CAST(:param_names AS text[]), CAST(:param_values AS float8[]),
                        CAST(:param_distributions AS text[])) AS p(name, value, distribution)
), {_REPORTS}, {_ATTRS}
SELECT CAST(state AS text) FROM found""")


def finish_parameters(trial_id: int, state: TrialState, finished: datetime,
                      values: Sequence[float] | None, reports: dict[int, float],
                      user_attrs: dict[str, Any]) -> dict[str, Any]:
    """FINISH's parameters: the trial ends in `state` at `finished` with `values` (None:
    none), its last `reports` (step -> value) and `user_attrs` stored with it."""
    stored = [_models.TrialValueModel.value_to_stored_repr(float(v)) for v in values or ()]
    return {"trial_id": trial_id, "state": state.name, "finished": finished,
            "objectives": list(range(len(stored))), "values": [v for v, _ in stored],
            "value_kinds": [kind.name for _, kind in stored],
            **_report_parameters(reports), **_attr_parameters(user_attrs)}


def reports_parameters(trial_id: int, params: list[tuple[str, float, Any]],
                       reports: dict[int, float], user_attrs: dict[str, Any]
                       ) -> dict[str, Any]:
    """REPORTS' parameters: `params` as (name, internal value, distribution), `reports`
    (step -> value) and `user_attrs` of a running trial."""
    return {"trial_id": trial_id, "param_names": [name for name, _, _ in params],
            "param_values": [float(value) for _, value, _ in params],
            "param_distributions": [distribution_to_json(d) for _, _, d in params],
            **_report_parameters(reports), **_attr_parameters(user_attrs)}


def _report_parameters(reports: dict[int, float]) -> dict[str, list]:
    stored = [_models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(float(v))
              for v in reports.values()]
    return {"steps": list(reports), "report_values": [v for v, _ in stored],
            "report_kinds": [kind.name for _, kind in stored]}


def _attr_parameters(user_attrs: dict[str, Any]) -> dict[str, list]:
    return {"attr_keys": list(user_attrs),
            "attr_jsons": [json.dumps(value) for value in user_attrs.values()]}
