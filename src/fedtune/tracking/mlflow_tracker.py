"""MLflow: the config as params, every round's metrics (step = round), and at the end the final
adapter, config.yaml and summary.json as artifacts of one MLflow run.

The run's id is kept in ``<run dir>/mlflow_run.json``: ``--resume`` continues the same MLflow run
and logs only the rows of rounds it has not logged yet (a round re-run after its checkpoint was
logged once, by the process that ran it first). Without a ``tracking_uri`` the store is a SQLite
database in the run directory (MLflow 3 refuses a plain ``file:`` store by default); artifacts of
a local store go to ``mlartifacts/`` beside the database. ``mlflow ui --backend-store-uri
sqlite:///runs/NAME/mlflow.db`` shows it.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from fedtune.schema import Section
from fedtune.tracking.registry import (
    TRACKERS,
    Tracker,
    config_leaves,
    flatten,
    import_backend,
)

STATE = "mlflow_run.json"
ARTIFACTS = ("adapter", "client_adapter", "adapters")  # the final adapter(s), whichever the run wrote
MAX_METRICS, MAX_PARAMS, MAX_VALUE = 1000, 100, 6000  # MLflow's batch and param-value limits


class MlflowParams(Section):
    # An MLflow server (http://localhost:5000) or database (sqlite:///path/mlflow.db);
    # null = sqlite:///<run dir>/mlflow.db.
    tracking_uri: str | None = None
    experiment: str | None = None  # default: the run's name


def _key(path: str) -> str:
    """A metric name MLflow accepts (letters, digits, _ - . / : and space)."""
    return re.sub(r"[^\w\-./: ]", "_", path)


@TRACKERS.register("mlflow", MlflowParams,
                   "MLflow: params, each round's metrics, the final adapter and summary.json (one MLflow run)")
class MlflowTracker(Tracker):
    requires = {"mlflow": "mlflow-skinny"}

    def start(self, cfg, run_dir: Path, resume: bool, rows: list[dict]) -> None:
        import_backend("mlflow", "mlflow", "mlflow-skinny")
        from mlflow.tracking import MlflowClient

        uri = self.params.tracking_uri or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
        self.client, self.done = MlflowClient(tracking_uri=uri), False
        state_path = run_dir / STATE
        state = json.loads(state_path.read_text()) if resume and state_path.exists() else {}
        if state.get("tracking_uri") == uri:  # continue the run an earlier process began
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self._create_run(cfg, uri, run_dir)
            tmp = state_path.with_name(STATE + ".tmp")
            tmp.write_text(json.dumps({"tracking_uri": uri, "run_id": self.run_id}))
            os.replace(tmp, state_path)
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data
        params = [Param(k, str(v)[:MAX_VALUE]) for k, v in config_leaves(cfg).items() if k not in logged.params]
        for i in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_PARAMS])
        self.last = max((m.step for key in logged.metrics for m in self.client.get_metric_history(self.run_id, key)),
                        default=-1)
        for row in rows:  # rows written before this process: a resume's, not yet logged
            self.log_row(row)

    def _create_run(self, cfg, uri: str, run_dir: Path) -> str:
        name = self.params.experiment or cfg.name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            local = uri.startswith("sqlite:///") and uri != "sqlite:///:memory:"
            where = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" if local else None
            experiment_id = self.client.create_experiment(name, artifact_location=where.resolve().as_uri() if where else None)
        run = self.client.create_run(experiment_id, run_name=cfg.name, tags={"fedtune.run_dir": str(run_dir.resolve())})
        return run.info.run_id

    def log_row(self, row: dict) -> None:
        step = row["round"]
        if step <= self.last:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_key(k), v, now, step) for k, v in flatten(row).items()]
        for i in range(0, len(metrics), MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + MAX_METRICS])
        self.last = step

    def finish(self, summary: dict, run_dir: Path) -> None:
        for name in ("summary.json", "config.yaml"):
            if (run_dir / name).exists():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        for folder in ARTIFACTS:
            if (run_dir / folder).is_dir():
                self.client.log_artifacts(self.run_id, str(run_dir / folder), folder)
        self.client.set_terminated(self.run_id, "FINISHED")
        self.done = True

    def close(self, error: BaseException | None = None) -> None:
        if not self.done and hasattr(self, "run_id"):
            self.client.set_terminated(self.run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            self.done = True
