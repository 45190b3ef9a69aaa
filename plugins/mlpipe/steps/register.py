"""register: put the trained model in the MLflow registry as ``challenger``; promote it through the gate.

The version carries its lineage and analysis as tags (data version, pipeline run,
MLflow run, analysis metrics, decision threshold). The gate (:func:`mlpipe.registry.promotion.decide`)
compares it with the current champion *re-scored on this run's analysis set*
(never trusting old numbers), after an infra check that loads the registered version
through the serving code path (the MLflow pyfunc) and scores the set's first rows.
Both models score the analysis set in one batched pass (:func:`mlpipe.model.evaluation.evaluate`):
memory holds one batch plus, per row, the label, the two scores, the slice columns and
the fairness column (whose groups the gate compares the task's way: approval rate, favorable-class rate or
mean prediction, :data:`mlpipe.registry.promotion.MEASURES`).
Every decision (promoted or not, why, the metrics side by side, forced or not, which
run) is recorded as tags on the version and as one event in the audit log
(:mod:`mlpipe.store.audit`). Promotion moves aliases only: ``champion`` to the new version,
``previous-champion`` to the one it replaced (:func:`move_champion`).

Promotions are exclusive: the gate and the alias moves of a registered model run under its
promotion lease (:func:`promotion_lease`, an :mod:`mlpipe.store.lease` in the artifact store), so
two runs registering at once decide one after the other, and the second compares with the
champion the first left. Should its holder crash, the lease expires
``$MLPIPE_PROMOTION_LEASE_SECONDS`` (default 1800) after it was taken, and a retry of the
same run's register takes it over at once. A register waits for the lease at most
``$MLPIPE_PROMOTION_WAIT_SECONDS`` (default 2400), then fails, to be retried.

Register is idempotent. A retry reuses the version this pipeline run already registered
for the same MLflow run instead of creating a second one. The decision is written to the
audit log before any of its effects (version tags, alias moves) and the version's audit tag
last, so a retry after a failure anywhere (e.g. the MLflow server went down) keeps the
decision already made: it finishes a recorded one (:func:`resumed_decision`) or, when the
audit tag says it was carried out, changes nothing; it never gates twice, never moves an
alias twice and never writes a second decision event.

Once the decision is carried out (outside the lease), the version gets its model card
(:mod:`mlpipe.registry.model_card`): ``model_card.md`` and a self-contained ``model_card.html``
under ``<run>/register/model_card/``, logged on the version's MLflow run under ``model_card/`` and
named by the version's ``mlpipe.model_card`` tags; the result names both files. A retry writes it
again. ``$MLPIPE_MODEL_CARD=0`` leaves it out.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlpipe.core import settings
from mlpipe.core.errors import Refused
from mlpipe.core.results import Analyze, Register, Split, Train
from mlpipe.core.spec import SpecError
from mlpipe.core.tasks import RULES, Task
from mlpipe.data import datasets
from mlpipe.data.datasets import require_columns
from mlpipe.model.evaluation import evaluate
from mlpipe.model.tabular import TabularModel
from mlpipe.registry import model_card, tracking
from mlpipe.registry.aliases import champion_version, promotion_lease
from mlpipe.registry.names import (
    AUDIT_TAG,
    CHALLENGER,
    CHAMPION,
    COMPARED_TAG,
    COMPARISON_TAG,
    FORCED_TAG,
    NOTES_OF_GATE_TAG,
    PREVIOUS_CHAMPION,
    PROMOTED_TAG,
    REASONS_TAG,
    REPLACED_TAG,
    THRESHOLD_TAG,
)
from mlpipe.registry.promotion import Decision, decide, scorecard, side_by_side
from mlpipe.registry.tracking import DATA_VERSION_TAG, NOTES_TAG, PIPELINE_TAG, RUN_URI_TAG
from mlpipe.store import audit, lease, storage
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlpipe.core.spec import Spec
    from mlpipe.model.evaluation import Scorer

log = logging.getLogger(__name__)

INFRA_ROWS = 20
INFRA_TOLERANCE = 1e-6
DECISIONS = ("promoted", "not_promoted")  # the audit actions of a promotion decision
def version_tags(run: Run, train: Train, metrics: dict[str, Any]) -> dict[str, str]:
    """Lineage and analysis tags of the model version registered by ``run``: its task's headline metric (binary:
    ``mlpipe.analysis_roc_auc``), the baseline's, the lift and, binary, the decision threshold."""
    name = RULES[run.spec.target.task].headline
    threshold = {THRESHOLD_TAG: str(metrics["threshold"])} if "threshold" in metrics else {}
    return {
        DATA_VERSION_TAG: train.data_version,
        RUN_URI_TAG: run.uri,
        "mlpipe.mlflow_run_id": train.mlflow_run_id,
        f"mlpipe.analysis_{name}": str(metrics[name]),
        f"mlpipe.baseline_{name}": str(metrics[f"baseline_{name}"]),
        "mlpipe.lift": str(metrics["lift"]),
        **threshold,  # exact (str of a float round-trips): serving uses it
        NOTES_TAG: run.options.get("notes", ""),
    }


def existing_version(client: MlflowClient, name: str, run: Run, mlflow_run_id: str) -> ModelVersion | None:
    """The version this pipeline run already registered from this MLflow run, if any."""
    found = client.search_model_versions(
        f"name = '{name}' and run_id = '{mlflow_run_id}' and tags.`{RUN_URI_TAG}` = '{run.uri}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def compared_version(client: MlflowClient, name: str, version: int) -> int | None:
    """The champion to compare ``version`` with; when it already is the champion (a retry), the one it replaced."""
    champion = champion_version(client, name)
    if champion != version:
        return champion
    replaced = client.get_model_version(name, str(version)).tags.get(REPLACED_TAG)
    return None if replaced is None else int(replaced)


def latest_version(client: MlflowClient, name: str) -> int:
    """The newest version number of registered model ``name``."""
    newest = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"], max_results=1)
    return int(newest[0].version)


def move_champion(client: MlflowClient, name: str, version: int, replaced: int | None) -> None:
    """``champion`` -> ``version`` and ``previous-champion`` -> ``replaced``, the champion it was compared with.

    The only place the promotion moves aliases (under the promotion lease). Repeating it changes
    nothing; a champion that is neither ``version`` nor ``replaced`` moved on since the decision
    (another promotion, a rollback) and is left alone.
    """
    current = champion_version(client, name)
    if current == version:
        return
    if current != replaced:
        log.warning("%s: champion is version %s, not version %s that version %d was compared with: left alone",
                    name, current, replaced, version)
        return
    if replaced is not None:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, str(replaced))
    client.set_registered_model_alias(name, CHAMPION, str(version))


def describe(error: BaseException) -> str:
    """An exception's type and the first line of its message (XGBoost appends a native stack trace)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else '(no message)'}"


def predicts(model: TabularModel) -> str:
    """What ``model`` predicts, for messages: its task, a multiclass model's classes."""
    classes = model.schema.get("classes")
    return f"a {model.task} target" + (f" with the classes {classes}" if classes else "")


def champion_scorer(client: MlflowClient, name: str, version: int,
                    challenger: TabularModel) -> tuple[Scorer, float | None]:
    """The registered ``version``'s scores (loaded as it is served) and, binary, the decision threshold it was
    promoted with; refused when it predicts another task (or classes) than the ``challenger``."""
    from mlpipe.model.pyfunc import load_version

    binary = challenger.task == Task.BINARY
    tags = client.get_model_version(name, str(version)).tags
    if binary and THRESHOLD_TAG not in tags:
        raise Refused(f"champion {name} version {version} has no {THRESHOLD_TAG} tag: cannot decide its approvals")
    try:
        model = load_version(name, version)
    except Exception as error:  # whatever broke it, the gate cannot compare: say which version and why
        if tracking.unreachable(error):  # not the champion's fault: the step fails, to be retried
            raise
        raise Refused(f"cannot re-score champion {name} version {version} to compare with it "
                        f"({describe(error)}); repair it or roll it back (mlpipe rollback {name})"
                        ) from error
    if predicts(model) != predicts(challenger):
        raise Refused(f"champion {name} version {version} predicts {predicts(model)} and this run's model "
                      f"{predicts(challenger)}: they cannot be compared; register it under another model_name, or "
                      f"roll the champion back (mlpipe rollback {name})")
    return model.scores, float(tags[THRESHOLD_TAG]) if binary else None


def kept_columns(spec: Spec, uri: str) -> list[str]:
    """The columns of the analysis set at ``uri`` the scorecards need: the slices and the fairness attribute."""
    require_columns(uri, spec.slices, "slices")
    rule = spec.thresholds.fairness
    if rule is None:
        return list(spec.slices)
    require_columns(uri, [rule.column], "thresholds.fairness.column")
    return list(dict.fromkeys([*spec.slices, rule.column]))


def infra_check(name: str, version: int, rows: pd.DataFrame, schema: dict[str, Any],
                expected: np.ndarray) -> str | None:
    """Load ``version`` as the server does (its MLflow pyfunc) and score ``rows`` (a multiclass model: each class's
    probability); what went wrong, or ``None``."""
    import mlflow
    import numpy as np

    from mlpipe.model.pyfunc import as_inputs

    uri = f"models:/{name}/{version}"
    try:
        predicted = mlflow.pyfunc.load_model(uri).predict(as_inputs(rows, schema))
        if "classes" in schema:
            predicted = predicted[TabularModel(None, schema).class_columns()]
        scores = np.asarray(predicted, dtype="float64")
    except Exception as error:  # any failure to load or score is the finding, reported with its type
        if tracking.unreachable(error):  # not the version's fault: the step fails, to be retried
            raise
        return f"{uri} could not load and score {len(rows)} analysis rows: {describe(error)}"
    if scores.shape != expected.shape or not np.isfinite(scores).all():
        return f"{uri} returned missing or non-finite scores for the first {len(rows)} analysis rows"
    worst = float(np.abs(scores - expected).max())
    if worst > INFRA_TOLERANCE:
        return f"{uri} scores differ from the trained model's by up to {worst:.3g} on the first {len(rows)} rows"
    return None


def gate(run: Run, client: MlflowClient, name: str, version: int,
         forced: bool) -> tuple[Decision, dict[str, Any], int | None]:
    """The promotion decision for ``version``, the scorecards side by side, and the version compared with."""
    spec, metrics, uri = run.spec, run.result(Analyze).metrics, run.result(Split).analysis
    trained = run.result(Train)
    model = TabularModel.load(trained.model_folder)
    contenders = {CHALLENGER: (model.scores, metrics.get("threshold"))}
    compared = compared_version(client, name, version)
    if compared is not None:
        contenders[CHAMPION] = champion_scorer(client, name, compared, model)
    classes = model.schema.get("classes")  # the champion's too (champion_scorer)
    evaluated = evaluate(uri, spec, {role: scorer for role, (scorer, _) in contenders.items()},
                         keep=kept_columns(spec, uri), classes=classes)
    baseline = metrics[f"baseline_{RULES[spec.target.task].headline}"]
    cards = {role: scorecard(spec, evaluated.kept, evaluated.y, evaluated.scores[role], threshold, baseline, classes)
             for role, (_, threshold) in contenders.items()}
    cards[CHALLENGER]["trees"] = trained.num_trees  # for the gate's sanity check
    champion = None if compared is None else {"version": compared, **cards[CHAMPION]}
    problem = infra_check(name, version, next(datasets.batches(uri, INFRA_ROWS)), model.schema,
                          evaluated.scores[CHALLENGER][:INFRA_ROWS])
    decision = decide(spec, cards[CHALLENGER], champion, force=forced, infra_error=problem)
    return decision, side_by_side(spec, cards[CHALLENGER], champion), compared


def apply_decision(run: Run, client: MlflowClient, name: str, version: int, forced: bool,
                   held: lease.Lease) -> dict[str, Any]:
    """Gate ``version``, record the decision in the audit log, then carry it out (:func:`enact`); what happened.

    A gate that outlived the promotion lease ``held`` records nothing (:func:`mlpipe.store.lease.confirm`).
    """
    decision, comparison, compared = gate(run, client, name, version, forced)
    lease.confirm(held)
    replaced = compared if decision.promote else None
    event = {
        "action": DECISIONS[0] if decision.promote else DECISIONS[1], "model": name, "version": version,
        "promoted": decision.promote, "forced": forced, "reasons": decision.reasons, "notes": decision.notes,
        "compared_with": compared, "replaced": replaced, "comparison": comparison, "run": run.uri,
        "actor": f"register step of run {run.run_id}", "data_version": run.result(Train).data_version}
    entry = audit.record(run.spec.name, event)  # first: a retry finds the decision and only finishes it
    log.info("%s version %d: promoted=%s (%s)", name, version, decision.promote, "; ".join(decision.reasons))
    return enact(client, event, entry)


def enact(client: MlflowClient, event: dict[str, Any], entry: str) -> dict[str, Any]:
    """Carry out the decision recorded at ``entry``: version tags, the alias move, the audit tag last.

    Repeating it changes nothing, so a retry can finish a decision that an earlier attempt recorded.
    """
    name, version = event["model"], str(event["version"])
    tags = {PROMOTED_TAG: str(event["promoted"]).lower(), REASONS_TAG: "; ".join(event["reasons"]),
            NOTES_OF_GATE_TAG: "; ".join(event["notes"]), FORCED_TAG: str(event["forced"]).lower(),
            COMPARED_TAG: "" if event["compared_with"] is None else str(event["compared_with"]),
            COMPARISON_TAG: json.dumps(event["comparison"], sort_keys=True),
            **({} if event["replaced"] is None else {REPLACED_TAG: str(event["replaced"])})}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if event["promoted"]:
        move_champion(client, name, event["version"], event["replaced"])
    client.set_model_version_tag(name, version, AUDIT_TAG, entry)
    return outcome(event, entry)


def outcome(event: dict[str, Any], entry: str) -> dict[str, Any]:
    """What the step reports of a promotion decision: from its audit ``event`` (written at ``entry``)."""
    return {**{key: event[key] for key in ("promoted", "forced", "reasons", "notes", "compared_with", "replaced")},
            "metrics": event["comparison"]["metrics"], "audit": entry}


def recorded_decision(client: MlflowClient, name: str, version: int) -> dict[str, Any] | None:
    """The decision an earlier attempt of this run already made and carried out for ``version``, if any.

    The audit tag is the last thing :func:`enact` writes, so a retried register neither
    gates twice, nor moves an alias twice, nor writes a second audit event.
    """
    entry = client.get_model_version(name, str(version)).tags.get(AUDIT_TAG)
    if entry is None:
        return None
    log.info("%s version %d: the decision of an earlier attempt stands (%s)", name, version, entry)
    return outcome(storage.read_json(entry), entry)


def resumed_decision(run: Run, client: MlflowClient, name: str, version: int) -> dict[str, Any] | None:
    """Finish the decision an earlier attempt of this run recorded for ``version`` but did not carry out, if any."""
    events = [event for event in audit.events_of(run.spec.name, name, version)
              if event["action"] in DECISIONS and event["run"] == run.uri]
    if not events:
        return None
    event = events[-1]
    log.info("%s version %d: finishing the decision an earlier attempt recorded (%s)", name, version, event["uri"])
    return enact(client, event, event["uri"])


@contextlib.contextmanager
def undone_when_refused(run: Run, client: MlflowClient, name: str, version: int, created: bool) -> Iterator[None]:
    """Delete ``version`` again when this attempt ``created`` it and the gate refused its input before any
    decision was recorded: a refused register leaves no half-registered version. (A version kept by an
    unavailable MLflow server or lease is reused by the retry.)"""
    try:
        yield
    except (Refused, SpecError):
        if created and not audit.events_of(run.spec.name, name, version):
            log.info("%s version %d: deleted again, its register step was refused", name, version)
            client.delete_model_version(name, str(version))
        raise


def register(run: Run) -> Register:
    import mlflow
    from mlflow import MlflowClient

    spec, train = run.spec, run.result(Train)
    metrics = run.result(Analyze).metrics
    name = spec.registered_model
    client = MlflowClient()
    kept_columns(spec, run.result(Split).analysis)  # what the gate needs, checked before anything is registered
    found = existing_version(client, name, run, train.mlflow_run_id)
    if created := found is None:
        found = mlflow.register_model(train.model_uri, name, tags=version_tags(run, train, metrics))
    else:
        log.info("reusing version %s of %s registered earlier by this run", found.version, name)
    version = int(found.version)
    with undone_when_refused(run, client, name, version, created), \
            promotion_lease(name, f"register step of run {run.uri}") as held:  # the champion is read and moved under it
        # where rollback finds the audit log; under the lease: MLflow's SQLite store inserts a new tag racily
        client.set_registered_model_tag(name, PIPELINE_TAG, spec.name)
        outcome = (recorded_decision(client, name, version) or resumed_decision(run, client, name, version)
                   or apply_decision(run, client, name, version, bool(run.options.get("force_promote")), held))
        if version == latest_version(client, name):  # an old run re-registered does not take the alias back
            client.set_registered_model_alias(name, CHALLENGER, str(version))
        aliases = client.get_model_version(name, str(version)).aliases
        champion = champion_version(client, name)
    registered = Register(model_name=name, version=version, aliases=sorted(aliases), **outcome,
                          champion_version=champion)
    if not settings.model_card():
        return registered
    card = model_card.publish(run, registered, run.path(Register.step, model_card.CARD_FOLDER))
    return registered.model_copy(update={"model_card_md": card.markdown, "model_card_html": card.html})
