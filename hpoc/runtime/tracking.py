"""Experiment tracking for trials: MLflow and TensorBoard, as the plan's `loggers` ask.

    parent = start_study_tracking(plan)          # driver, once: MLflow parent run (or None)
    tracker = open_loggers(plan, trial_name, config, rank, trial_index, parent_run_id=parent)
    tracker.log_params(config)
    tracker.log_metrics({"train_loss": 0.4, "val_loss": 0.5}, step=epoch)
    tracker.log_batch_metric("train_loss_batch", 0.41, step=global_batch)
    tracker.close()

Only rank 0 of a trial logs; other ranks get a tracker that does nothing. Backends are
imported when first used, never at import time. Tracking never stops a trial: a backend that
fails is switched off with one warning (per backend and process) and training goes on.

MLflow: one parent run per study (tag `hpoc.study_key` = the plan's hash), one nested child
run per trial (tag `hpoc.trial`), params and per-epoch metrics; by default a local file
store at `<storage.path>/<storage.name>/mlruns`. A server is sent to off the training thread
(`tracking_send`): one that dies mid-trial costs the trial a probe, not MLflow's retries;
the metrics still waiting for it are sent, 2 s at most, as the process stops (`at_stop`).
TensorBoard: one event-file directory per trial under `<storage.path>/<storage.name>/tensorboard/`
(or the logger's tracking_uri).
A trial that resumes from its checkpoint continues its run (or folder) and leaves out the
steps it already has; one that starts over (no checkpoint; PBT's exploit of an older one)
replaces the points after where it starts (`Tracker.begin`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from hpoc.runtime import at_stop, tracking_send

log = logging.getLogger("hpoc.tracking")
_warned: set[str] = set()

STUDY_KEY_TAG = "hpoc.study_key"
TRIAL_TAG = "hpoc.trial"
ATTEMPT_TAG = "hpoc.attempt"
SUPERSEDED_TAG = "hpoc.superseded_by"
PARENT_TAG = "mlflow.parentRunId"
# What a tracker's `fresh_unless_told` returns when a restore to come will say where the
# attempt starts (`Tracker.begin`): metrics logged before it wait for it.
LATER = "later"


def _warn_once(kind: str, what: str, exc: BaseException) -> None:
    if kind in _warned:
        return
    _warned.add(kind)
    log.warning("%s tracking disabled (%s failed: %s: %s); training continues",
                kind, what, type(exc).__name__, exc)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _float(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


# ------------------------------------------------------------------ where things go

def study_dir(plan: Mapping[str, Any]) -> Path:
    return Path(plan["storage"]["path"]) / plan["storage"]["name"]


def study_key(plan: Mapping[str, Any]) -> str:
    """Identifies the study (and plan version) across shards and restarts."""
    digest = str(plan.get("content_hash") or "").removeprefix("sha256:")
    if not digest:
        digest = hashlib.sha256(plan["study"]["name"].encode()).hexdigest()
    return digest[:32]


def _is_uri(text: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", text)) and not re.match(r"^[a-zA-Z]:\\", text)


def _local_path(plan: Mapping[str, Any], text: str) -> Path:
    """A folder given as a path or a `file:` URI (`file:///p/my%20runs`, `file://localhost/p`,
    `file:./mlruns`); a relative one is in the spec's directory."""
    full = re.match(r"(?i)file://(?:localhost)?(/.*)", text)
    if full:
        import urllib.parse

        text = urllib.parse.unquote(full.group(1))
    elif text[:5].lower() == "file:":
        text = text[5:]
    path = Path(text).expanduser()
    return path if path.is_absolute() else Path(plan["source"]["workdir"]) / path


def mlflow_uri(plan: Mapping[str, Any], logger: Mapping[str, Any]) -> str:
    uri = logger.get("tracking_uri")
    if not uri:
        return (study_dir(plan) / "mlruns").as_uri()
    if _is_uri(uri) and not uri.startswith("file:"):
        return uri  # a server, a database: used as given
    return _local_path(plan, uri).as_uri()


def tensorboard_dir(plan: Mapping[str, Any], logger: Mapping[str, Any], trial_name: str) -> Path:
    uri = logger.get("tracking_uri")
    base = _local_path(plan, uri) if uri else study_dir(plan) / "tensorboard"
    if logger.get("experiment_name"):
        base = base / _safe(logger["experiment_name"])
    return base / _safe(trial_name)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", str(name)).strip("._") or "trial"


def _loggers(plan: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    return [lg for lg in plan.get("loggers") or [] if lg.get("kind") == kind]


# ------------------------------------------------------------------ MLflow

def _file_root(uri: str) -> Path:
    """The folder of a file store's URI as `mlflow_uri` makes it (`file:///p/my%20runs`)."""
    import urllib.parse

    return Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path))


def _mlflow_client(uri: str):
    if uri.startswith("file:"):
        # MLflow 3 refuses its file store unless asked; it is the store that needs no server
        # or database and works on a shared filesystem.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        _file_root(uri).mkdir(parents=True, exist_ok=True)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def _file_lock(uri: str, key: str, timeout_s: float = 60.0) -> Iterator[None]:
    """Serialise find-or-create across processes and nodes for file stores: mkdir is atomic
    on local and network filesystems. Other stores rely on de-duplication afterwards."""
    if not uri.startswith("file:"):
        yield
        return
    root = _file_root(uri)
    lock = root.parent / ".hpoc-locks" / f"mlflow-{root.name}-{key}"
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            lock.mkdir()
            break
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > 2 * timeout_s:  # holder died
                    lock.rmdir()
                    continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"lock {lock} held for more than {timeout_s:.0f} s")
            time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.rmdir()


# MLflow's file store puts an experiment's name between single quotes in a filter of its
# own (mlflow#12785): one with an apostrophe ("Bob's study") can be neither found nor made
# there; it is stored with a typographic one instead, which looks the same in the UI.
APOSTROPHE = "\u2019"


def _experiment_id(client: Any, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return _find_or_create_experiment(client, name, uri)
    except MlflowException as exc:
        if "'" not in name or "filter string" not in str(exc):  # not that store's own filter
            raise
        return _find_or_create_experiment(client, name.replace("'", APOSTROPHE), uri)


def _find_or_create_experiment(client: Any, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        # The file store does not refuse a second experiment of the same name: create it
        # under the lock, after looking again.
        with _file_lock(uri, "setup"):
            exp = client.get_experiment_by_name(name)
            if exp is None:
                try:
                    return client.create_experiment(name)
                except MlflowException:  # created meanwhile (a server, a database)
                    exp = client.get_experiment_by_name(name)
                    if exp is None:
                        raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def _where(tags: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """MLflow's filter for runs whose tags have these values, and the tags it cannot say.
    MLflow keeps what is between a value's quotes as it is (no escapes): a value with an
    apostrophe goes between double quotes, one with both kinds cannot be said, and a
    backslash before a closing quote escapes it. Each clause is checked, with those before
    it, by MLflow's own parser (the store's)."""
    from mlflow.utils.search_utils import SearchUtils

    clauses: list[str] = []
    wanted: list[dict[str, str]] = []
    unsaid: dict[str, str] = {}
    for key, value in tags.items():
        for quote in ("'", '"'):
            clause = f"tags.`{key}` = {quote}{value}{quote}"
            want = {"type": "tag", "key": key, "comparator": "=", "value": value}
            try:
                parsed = SearchUtils.parse_search_filter(" and ".join([*clauses, clause]))
            except Exception:  # noqa: BLE001 — MlflowException: this quoting does not parse
                continue
            if parsed == [*wanted, want]:
                clauses.append(clause)
                wanted.append(want)
                break
        else:
            unsaid[key] = value
    return " and ".join(clauses), unsaid


def _tagged(client: Any, exp_id: str, tags: Mapping[str, str], order_by: str, most: int = 50) -> list:
    """The runs (`most` at most, in `order_by`) whose tags have these values (ids first: a
    value that ends in a backslash is said last). A value the filter cannot say is compared
    here, over every page of what the rest finds: a trial name with an apostrophe made a
    run per attempt, one with both quote kinds an MLflow error."""
    where, unsaid = _where(tags)
    if not unsaid:
        return list(client.search_runs([exp_id], filter_string=where, max_results=most, order_by=[order_by]))
    found, token = [], None
    while len(found) < most:
        page = client.search_runs([exp_id], filter_string=where, max_results=1000, order_by=[order_by],
                                  page_token=token)
        found += [r for r in page if all(r.data.tags.get(k) == v for k, v in unsaid.items())]
        token = page.token
        if not token:
            break
    return found[:most]


def _find_parent(client: Any, exp_id: str, key: str) -> Any:
    # oldest first: the trials' runs carry the study's tag too, and are made after the parent
    runs = _tagged(client, exp_id, {STUDY_KEY_TAG: key}, "attributes.start_time ASC")
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    return min(parents, key=lambda r: (r.info.start_time, r.info.run_id), default=None)


def _parent_run(client: Any, exp_id: str, plan: Mapping[str, Any], uri: str) -> str:
    """Find or create the study's parent run; concurrent callers end up with the same one."""
    key = study_key(plan)
    with _file_lock(uri, "setup"):
        found = _find_parent(client, exp_id, key)
        if found is not None:
            return found.info.run_id
        tags = {STUDY_KEY_TAG: key, "hpoc.study": plan["study"]["name"],
                "hpoc.plan_hash": str(plan.get("content_hash") or ""),
                "hpoc.shards": str(plan.get("shards", {}).get("count", 1))}
        run = client.create_run(exp_id, tags=tags, run_name=plan["study"]["name"])
        oldest = _find_parent(client, exp_id, key)
        if oldest is not None and oldest.info.run_id != run.info.run_id:
            client.delete_run(run.info.run_id)  # lost a race (no lock on this store)
            return oldest.info.run_id
        with contextlib.suppress(Exception):
            client.log_batch(run.info.run_id, params=_params(
                {"study": plan["study"]["name"], "num_samples": plan["trials"]["num_samples"],
                 "search": plan["search"]["algorithm"], "scheduler": plan["scheduler"]["name"],
                 **({"metric": plan["objective"]["metrics"][0]["name"],
                     "mode": plan["objective"]["metrics"][0]["mode"]}
                    if plan["objective"]["metrics"] else {})}))
        return run.info.run_id


def _params(flat: Mapping[str, Any]) -> list:
    from mlflow.entities import Param

    def text(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, default=str)

    return [Param(k[:250], text(v)[:6000]) for k, v in flat.items()]


# logger kind -> (modules, any one of which will do; the pip package to install)
LOGGER_LIBRARIES = {
    "mlflow": (("mlflow",), "mlflow-skinny"),
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
}


def missing_libraries(plan: Mapping[str, Any]) -> str | None:
    """Why a `logger` block of the study cannot log here (its library is not installed), or
    None. Found before Ray starts: at run time a logger that fails only warns, and the
    study would run for hours without the tracking asked for."""
    from hpoc.runtime import packages

    kinds = [lg.get("kind") for lg in plan.get("loggers") or ()]
    missing = packages.missing({k: LOGGER_LIBRARIES[k] for k in kinds if k in LOGGER_LIBRARIES})
    if not missing:
        return None
    what = ", ".join(f"`logger {k}`" for k in missing)
    return packages.install_hint(what, missing.values(), ", or remove the logger block")


def _without_password(uri: str) -> str:
    """`uri` without the `user:password@` of its host: for the probe and for messages."""
    import urllib.parse

    parts = urllib.parse.urlsplit(uri)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


# What an MLflow client asks first (`search_experiments`), as it asks it: under the URI's path
_API = "/api/2.0/mlflow/experiments/search?max_results=1"


def _no_answer(uri: str, timeout_s: float) -> str | None:
    """What is wrong with the MLflow server at `uri`, asked once with `timeout_s`: "does not
    answer (...)", or "answers 404 ..." (no MLflow server there); None when it answers.
    Another HTTP error (401 of a server that wants credentials, a 5xx) is an answer: this is
    about the address and the network. So is a TLS certificate this Python does not trust:
    MLflow's client may (REQUESTS_CA_BUNDLE, MLFLOW_TRACKING_SERVER_CERT_PATH, ..._INSECURE_TLS)."""
    import socket
    import ssl
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(_without_password(uri))
    probe = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")) + _API
    late = f"does not answer in {timeout_s:g} s"
    try:
        urllib.request.urlopen(probe, timeout=timeout_s).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return "answers 404 to MLflow's API: no MLflow server at that address and path"
        return None
    except (TimeoutError, socket.timeout):
        return late
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return late
        if isinstance(reason, ssl.SSLCertVerificationError):
            return None  # it answered the handshake
        return f"does not answer ({getattr(reason, 'strerror', None) or reason})"
    except ssl.SSLCertVerificationError:
        return None
    except (OSError, ValueError) as exc:
        return f"does not answer ({getattr(exc, 'strerror', None) or exc})"
    return None


def unreachable_server(plan: Mapping[str, Any], timeout_s: float = 10.0) -> str | None:
    """What is wrong with the study's MLflow tracking server from this machine, or None.
    Asked before Ray starts: MLflow's client retries one that does not answer for minutes
    (longer where a node without internet drops the packets), in the driver and again in
    each trial, before its logger gives up; and the study ran on without tracking."""
    import socket

    for logger in _loggers(plan, "mlflow"):
        uri = mlflow_uri(plan, logger)
        if not uri.lower().startswith(("http://", "https://")):
            continue
        why = _no_answer(uri, timeout_s)
        if why:
            hint = ("check the host, port and path in `tracking_uri`" if why.startswith("answers") else
                    "start it, or make it reachable from the compute nodes (many have no internet)")
            return (f"`logger mlflow`: the tracking server {_without_password(uri)} {why}, from "
                    f"{socket.gethostname()}\n  help: {hint}; or log to a file store on a shared "
                    "filesystem: leave `tracking_uri` out (mlruns in the study's directory), and "
                    "view it with `MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <that folder>`")
    return None


# A trial's first request to a tracking server is waited for this long at most: a server
# gone silent since the driver asked was retried by MLflow's client for minutes (7 tries,
# up to 120 s each) before the trial's logger gave up. No probe before it: the driver asked
# (one after it, to tell a busy server from a gone one).
FIRST_ANSWER_S = 10.0
# Servers this process found gone ({URI: (why, until)}), not asked again for GONE_S: each
# trial of a reused process waited FIRST_ANSWER_S for one and left a thread (and a socket)
# in MLflow's retries; for good, a server's restart cost the rest of a study its tracking.
GONE_S = 600.0
_gone: dict[str, tuple[str, float]] = {}


def _is_server(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def _first_answer(uri: str, request: Callable[[], Any]) -> Any:
    """request() to the server at `uri`, waited for FIRST_ANSWER_S at most (in a daemon
    thread, left to MLflow's retries); ConnectionError when it has not answered by then,
    unless a second probe is answered: a busy server is waited for, as MLflow would. A
    server found gone is not asked again by this process for GONE_S (ConnectionError at once)."""
    if not _is_server(uri):
        return request()
    why, until = _gone.get(_without_password(uri), ("", 0.0))
    if time.monotonic() < until:
        raise ConnectionError(why)
    import threading

    got: dict[str, Any] = {}

    def ask() -> None:
        try:
            got["answer"] = request()
        except BaseException as exc:  # noqa: BLE001 — raised in the trial's thread below
            got["error"] = exc

    asking = threading.Thread(target=ask, name="hpoc-mlflow-first-request", daemon=True)
    asking.start()
    asking.join(FIRST_ANSWER_S)
    if asking.is_alive():  # a refused connection says so; a silent one has had its time
        why = _no_answer(uri, 1.0)
        if why is None:  # it answers, busy (trials starting at once): MLflow's own timeouts hold
            asking.join()
        else:
            why = why if why.startswith("does not answer (") else f"does not answer in {FIRST_ANSWER_S:g} s"
            raise ConnectionError(_found_gone(uri, why))
    if "error" in got:
        raise got["error"]
    return got["answer"]


def _gone_said(uri: str, why: str) -> str:
    return f"the server {_without_password(uri)} {why}; not asked again by this process for {GONE_S:g} s"


def _found_gone(uri: str, why: str) -> str:
    """Mark the server at `uri` gone for this process, GONE_S; what to say."""
    said = _gone_said(uri, why)
    _gone[_without_password(uri)] = (said, time.monotonic() + GONE_S)
    return said


def _shard_tag(shard: int) -> str:
    return f"hpoc.shard.{shard}.status"


def start_study_tracking(plan: Mapping[str, Any], shard: int = 0) -> str | None:
    """In the driver: create (or find) the MLflow parent run; its id goes to every trial."""
    for logger in _loggers(plan, "mlflow"):
        try:
            uri = mlflow_uri(plan, logger)
            client = _mlflow_client(uri)
            name = logger.get("experiment_name") or plan["study"]["name"]
            run_id = _parent_run(client, _first_answer(uri, lambda: _experiment_id(client, name, uri)),
                                 plan, uri)
            client.update_run(run_id, status="RUNNING")  # a resumed study's run ended KILLED
            if _shard_count(plan) > 1:
                client.set_tag(run_id, _shard_tag(shard), "RUNNING")
            return run_id
        except Exception as exc:  # noqa: BLE001 — tracking must not stop the study
            _warn_once("mlflow", "creating the study run", exc)
    return None


def _shard_count(plan: Mapping[str, Any]) -> int:
    return int((plan.get("shards") or {}).get("count") or 1)


def _study_status(client: Any, run_id: str, count: int) -> str | None:
    """The parent run's status once every shard has ended (each says how in its tag), or
    None while one runs or has not started: the shards of a job array end at different
    times, and the first to end marked the whole study FINISHED."""
    tags = client.get_run(run_id).data.tags
    ended = [tags.get(_shard_tag(k)) for k in range(count)]
    if any(status in (None, "RUNNING") for status in ended):
        return None
    return next((s for s in ("FAILED", "KILLED") if s in ended), "FINISHED")


def end_study_tracking(plan: Mapping[str, Any], parent_run_id: str | None,
                       status: str = "FINISHED", shard: int = 0) -> None:
    """In the driver, as its shard ends; the parent run ends with the last shard (FAILED if
    one failed, else KILLED if one was stopped)."""
    if not parent_run_id:
        return
    for logger in _loggers(plan, "mlflow"):
        try:
            uri = mlflow_uri(plan, logger)
            client = _mlflow_client(uri)
            # a server gone since the study started: MLflow's client retried it for minutes
            _first_answer(uri, lambda: _end_parent(client, uri, parent_run_id, status, shard,
                                                   _shard_count(plan)))
        except Exception as exc:  # noqa: BLE001
            _warn_once("mlflow", "closing the study run", exc)
        return


def _end_parent(client: Any, uri: str, run_id: str, status: str, shard: int, count: int) -> None:
    if count > 1:
        with _file_lock(uri, "setup"):  # two shards ending at once: one sees both
            client.set_tag(run_id, _shard_tag(shard), status)
            status = _study_status(client, run_id, count)
        if status is None:
            return
    client.set_terminated(run_id, status)


def _logged_before(logged: Mapping[str, int], name: str, step: int) -> bool:
    """A resumed trial redoes the steps after its checkpoint, which the attempt it resumes
    had logged (up to where it stopped): a point whose step the run already has is left out
    (one point per step; MLflow cannot delete the first, and a seeded trial redoes the
    same values bit for bit)."""
    return int(step) <= logged.get(name, -1)


def _past(logged: Mapping[str, int], keep: Mapping[str, int]) -> bool:
    """Whether a run (or folder) has a point past where an attempt that starts over keeps."""
    return any(last > keep.get(name, -1) for name, last in logged.items())


def _last_steps(client: Any, run_id: str, keys: Any) -> dict[str, int]:
    """The last step of each metric `keys` names in the run, through MLflow's public API: one
    history read per metric, once, when a trial's run is continued (never per step)."""
    return {key: max((int(m.step) for m in client.get_metric_history(run_id, key)), default=-1)
            for key in keys}


class _MlflowSink:
    kind = "mlflow"
    BATCH_FLUSH = 200
    OUTBOX_MAX = 100_000  # metrics waiting for the server (~30 MB), beyond which logging waits

    def __init__(self, plan: Mapping[str, Any], logger: Mapping[str, Any], trial_name: str,
                 trial_index: int | None, parent_run_id: str | None) -> None:
        self.batch = logger.get("log_freq") == "batch"
        self.uri = uri = mlflow_uri(plan, logger)
        self.client = client = _mlflow_client(uri)
        name = logger.get("experiment_name") or plan["study"]["name"]
        exp_id = _first_answer(uri, lambda: _experiment_id(client, name, uri))
        # the calls after the first go through one thread, off the training thread
        self.send: Any = (tracking_send.Sender(self._stalled, FIRST_ANSWER_S) if _is_server(uri)
                          else tracking_send.Inline())
        try:
            self._start(plan, trial_name, trial_index, exp_id, parent_run_id)
        except BaseException:
            self.send.stop()  # its thread ends
            if isinstance(getattr(self.send, "error", None), tracking_send.Gone):
                _found_gone(uri, self.stalled_why)
            raise
        if _is_server(uri):
            _open_sinks.add(self)
            at_stop.register(_send_waiting)

    def _start(self, plan: Mapping[str, Any], trial_name: str, trial_index: int | None,
               exp_id: str, parent_run_id: str | None) -> None:
        client, uri = self.client, self.uri
        parent = parent_run_id or self.send.call(lambda: _parent_run(client, exp_id, plan, uri))
        self.logged: dict[str, int] = {}  # a continued run's last step per metric
        self.trial_name, self.exp_id = trial_name, exp_id
        self.tags = {PARENT_TAG: parent, TRIAL_TAG: trial_name, STUDY_KEY_TAG: study_key(plan),
                     "hpoc.study": plan["study"]["name"]}
        if trial_index is not None:
            self.tags["hpoc.trial_index"] = str(trial_index)
        self.attempt, self.was = 1, "KILLED"  # a continued run's attempt, and how it had ended
        self.params: dict[str, Any] = {}
        self.pending: list = []
        # metrics handed to the sending thread, taken by one send: a server slower than the
        # trial logs gets them in few requests, where a queue of one per step held training
        self.outbox: list = []
        self.outbox_lock, self.outbox_queued = threading.Lock(), False
        self.run_id = self.send.call(lambda: self._child(exp_id, parent, trial_name))

    def _stalled(self) -> str | None:
        """What to say of a server that stopped answering mid-trial (marked gone), or None
        while it answers a probe (busy: waited for)."""
        why = _no_answer(self.uri, 1.0)
        if why is None or why.startswith("answers"):
            return None
        # marked gone once the sender finds the send still waiting after the probe (`failed`)
        late = f"does not answer in {FIRST_ANSWER_S:g} s"
        self.stalled_why = why if why.startswith("does not answer (") else late
        return (f"{_gone_said(self.uri, self.stalled_why)}; this trial logs no more to it (the "
                "metrics it reports stay in its result.json)")

    def failed(self) -> None:
        """A call failed (after MLflow's retries) or stalled: nothing more is sent, and a
        server that does not answer a probe now is not asked by this process's later
        trials (`_first_answer`)."""
        _open_sinks.discard(self)
        self.send.stop()
        if _is_server(self.uri) and _gone.get(_without_password(self.uri), ("", 0.0))[1] <= time.monotonic():
            if isinstance(getattr(self.send, "error", None), tracking_send.Gone):
                _found_gone(self.uri, self.stalled_why)  # probed just now
                return
            why = _no_answer(self.uri, 1.0)
            if why and not why.startswith("answers"):
                _found_gone(self.uri, why)

    def _child(self, exp_id: str, parent: str, trial_name: str) -> str:
        # a restarted trial goes on in its own run (its latest attempt's)
        runs = _tagged(self.client, exp_id, {PARENT_TAG: parent, TRIAL_TAG: trial_name},
                       "attributes.start_time DESC")
        run, *older = [r for r in runs if SUPERSEDED_TAG not in r.data.tags] or [None]
        for other in older:  # an attempt lost before it marked the run it replaced, an older hpoc's
            self._supersede(other.info.run_id, run.info.run_id, other.data.tags.get(ATTEMPT_TAG),
                            "KILLED" if other.info.status == "RUNNING" else None)
        if run is not None:
            run_id = run.info.run_id
            self.logged = _last_steps(self.client, run_id, run.data.metrics)
            self.attempt = int(run.data.tags.get(ATTEMPT_TAG) or 1)
            self.was = run.info.status if run.info.status != "RUNNING" else "KILLED"
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        return self._create()

    def _create(self) -> str:
        tags = {**self.tags, ATTEMPT_TAG: str(self.attempt)}
        return self.client.create_run(self.exp_id, tags=tags, run_name=self.trial_name).info.run_id

    def restart(self, keep: Mapping[str, int]) -> None:
        """This attempt starts over (`Tracker.begin`): when the run has points past `keep`, a
        new run holds the points up to `keep` and this attempt's; MLflow cannot delete a
        point, so the old run stays beside it, renamed and tagged `hpoc.superseded_by`."""
        if _past(self.logged, keep):
            self.send.call(lambda: self._restart(keep))

    def _restart(self, keep: Mapping[str, int]) -> None:
        old, kept = self.run_id, []
        for key, last in keep.items():
            if key in self.logged:
                kept += [m for m in self.client.get_metric_history(old, key) if m.step <= last]
        self.attempt += 1
        self.run_id = self._create()
        if self.params:
            self._log_params(self.params)
        pending, self.pending = kept + self.pending, []
        self._log_batch(pending)
        self.logged = {}
        for m in kept:
            self.logged[m.key] = max(self.logged.get(m.key, -1), int(m.step))
        self._supersede(old, self.run_id, self.attempt - 1, self.was)

    def _supersede(self, old: str, new: str, attempt: Any, status: str | None) -> None:
        """Mark run `old` of this trial as replaced by `new`, the trial's current run: the one
        run of a trial without the tag."""
        self.client.set_tag(old, SUPERSEDED_TAG, new)
        said = f"attempt {attempt}, superseded" if attempt else "superseded"
        self.client.update_run(old, status=status, name=f"{self.trial_name} ({said})")

    def log_params(self, flat: Mapping[str, Any]) -> None:
        self.params.update(flat)  # for a run that supersedes this one (`restart`)
        flat = dict(flat)
        self.send.put(lambda: self._log_params(flat))

    def _log_params(self, flat: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        # MLflow refuses a param's new value, which a continued run meets when PBT restarts
        # an exploiting trial with mutated values: the run keeps the first value, a tag the
        # current one (a refusal would switch this logger off for the rest of the trial).
        logged = self.client.get_run(self.run_id).data.params
        items = [p for p in _params(flat) if p.key not in logged]
        tags = [RunTag(f"hpoc.param.{p.key}"[:250], p.value[:5000]) for p in _params(flat)
                if p.key in logged and logged[p.key] != p.value]
        for i in range(0, len(items), 100):  # MLflow's per-call limit
            self.client.log_batch(self.run_id, params=items[i:i + 100])
        for i in range(0, len(tags), 100):
            self.client.log_batch(self.run_id, tags=tags[i:i + 100])

    def _model(self) -> dict[str, str]:
        """The logging thread's active model (`mlflow.set_active_model`, MLflow 3), which
        MLflow links a metric to: a thread's own, so read here, not in the sending thread."""
        try:
            from mlflow.tracking.fluent import get_active_model_id
        except ImportError:  # MLflow 2: no logged models
            return {}
        model_id = get_active_model_id()
        return {"model_id": model_id} if model_id else {}

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now, model = int(time.time() * 1000), self._model()
        points = [Metric(k, v, now, int(step), **model) for k, v in metrics.items()
                  if not _logged_before(self.logged, k, step)]
        with self.outbox_lock:  # not `pending +=` unlocked: a stop's send_waiting swaps it meanwhile
            self.pending += points
        self.flush()

    def log_batch_metric(self, name: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        if _logged_before(self.logged, name, step):
            return
        point = Metric(name, value, int(time.time() * 1000), int(step), **self._model())
        with self.outbox_lock:
            self.pending.append(point)
        if len(self.pending) >= self.BATCH_FLUSH:
            self.flush()

    def log_item(self, kind: str, item: Any, name: str) -> bool:
        """itwinai's other `self.log` kinds, as its MLflow logger logs them; False for a kind
        this sink does not log. Waited for: the caller may change or remove its file after."""
        return self.send.call(lambda: self._log_item(kind, item, name))

    def _log_item(self, kind: str, item: Any, name: str) -> bool:
        client, run = self.client, self.run_id
        if kind == "artifact":  # a file or a folder of this node's
            log = client.log_artifacts if os.path.isdir(item) else client.log_artifact
            log(run, str(item), artifact_path=name)
        elif kind == "torch":
            import tempfile

            import torch

            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, os.path.basename(name) or "object.pt")
                torch.save(item, path)
                client.log_artifact(run, path, artifact_path=name)
        elif kind in ("dict", "text", "figure", "image"):
            getattr(client, f"log_{kind}")(run, item, name)
        else:
            return False
        return True

    def flush(self) -> None:
        if not self.pending:
            return
        with self.outbox_lock:  # pending too: `send_waiting` takes it from another thread
            pending, self.pending = self.pending, []
            self.outbox += pending
            queued, self.outbox_queued = self.outbox_queued, True
            full = len(self.outbox) >= self.OUTBOX_MAX
        if not queued:
            self.send.put(self._send_outbox)
        elif full:  # a server that slow: the trial waits for it, as it did for each send
            self.send.call(lambda: None)
        else:
            self.send.check()  # a stalled server is still probed, a failed send still said

    def _send_outbox(self) -> None:
        with self.outbox_lock:
            metrics, self.outbox, self.outbox_queued = self.outbox, [], False
        self._log_batch(metrics)

    def _log_batch(self, metrics: list) -> None:
        for i in range(0, len(metrics), 1000):  # MLflow's per-call limit
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def send_waiting(self, timeout_s: float) -> bool:
        """The process stops (at_stop: a SIGTERM): send the metrics still waiting, after what
        is queued, within `timeout_s` (the last epoch's, before a time limit); never raises.
        False when they were not sent by then (a hung server: the process exits anyway)."""
        with self.outbox_lock:
            pending, self.pending = self.pending, []
            self.outbox += pending
            self.outbox_queued = True  # the send below takes what a queued one would
        return self.send.flush(timeout_s, self._send_outbox)

    def close(self, status: str) -> None:
        with self.outbox_lock:
            pending, self.pending = self.pending, []
            self.outbox += pending

        def end() -> None:
            try:
                self._send_outbox()
            finally:
                self.client.set_terminated(self.run_id, status)

        try:
            self.send.put(end)
            self.send.drain()
        finally:
            _open_sinks.discard(self)


# ------------------------------------------------------------------ TensorBoard

def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams
    return SummaryWriter, hparams


def _event_scalars(logdir: Path) -> dict[str, dict[int, tuple[float, float]]]:
    """The scalars in the event files already in `logdir` (each attempt of a trial writes a
    new file beside them), {tag: {step: (wall time, value)}}, as TensorBoard shows them: a
    restart's purge (`purge_step`) drops the points at and after its step read before it;
    records cut short by a kill end a file's read."""
    import struct

    files = sorted(logdir.glob("events.out.tfevents.*"))  # TensorBoard's order too
    if not files:
        return {}
    try:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
    except ImportError:
        from tensorboardX.proto.event_pb2 import Event, SessionLog
    scalars: dict[str, dict[int, tuple[float, float]]] = {}
    for path in files:
        data = path.read_bytes()
        at = 0
        while at + 12 <= len(data):  # TFRecord: length, its crc, the record, its crc
            (size,) = struct.unpack_from("<Q", data, at)
            record = data[at + 12:at + 12 + size]
            at += 12 + size + 4
            if len(record) < size or at > len(data):
                break
            try:
                event = Event.FromString(record)
            except Exception:  # noqa: BLE001 — a damaged file: what came before it counts
                break
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                for points in scalars.values():
                    for step in [k for k in points if k >= event.step]:
                        del points[step]
            for value in event.summary.value:
                if value.HasField("simple_value"):  # add_scalar's; not text, not hparams
                    scalars.setdefault(value.tag, {})[int(event.step)] = (event.wall_time, value.simple_value)
    return scalars


def _event_steps(logdir: Path) -> dict[str, int]:
    """The last step of each scalar in `logdir`'s event files."""
    return {tag: max(points) for tag, points in _event_scalars(logdir).items() if points}


def _after_newest_file(logdir: Path) -> None:
    """Wait, if need be, for a second later than the newest event file's in `logdir`:
    TensorBoard reads a folder's files in name order (the second each was made, then host,
    pid and a counter), and a restart's purge must come after the points it replaces, and
    a resume's points after that purge. Only an attempt made within a second of the last
    one waits (under a second)."""
    stamps = [int(p.name.split(".")[3]) for p in logdir.glob("events.out.tfevents.*")
              if p.name.count(".") >= 3 and p.name.split(".")[3].isdigit()]
    wait = max(stamps, default=0) + 1 - time.time()
    if wait > 0:
        time.sleep(wait)


class _TensorBoardSink:
    kind = "tensorboard"

    def __init__(self, plan: Mapping[str, Any], logger: Mapping[str, Any], trial_name: str,
                 trial_index: int | None, parent_run_id: str | None) -> None:
        self.batch = logger.get("log_freq") == "batch"
        writer_cls, self._hparams = _summary_writer()
        self.logdir = tensorboard_dir(plan, logger, trial_name)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.logged = _event_steps(self.logdir)  # a resumed trial's earlier attempts
        self.writer_cls, self._writer, self.purge = writer_cls, None, None
        self.params: dict[str, Any] = {}
        self.last: dict[str, float] = {}

    @property
    def writer(self) -> Any:
        """Made at the first write, once `restart` may have asked for a purge."""
        if self._writer is None:
            _after_newest_file(self.logdir)
            purge = {} if self.purge is None else {"purge_step": self.purge}
            self._writer = self.writer_cls(log_dir=str(self.logdir), **purge)
            if self.params:
                self._config(self.params)
        return self._writer

    def _config(self, flat: Mapping[str, Any]) -> None:
        lines = ["| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {json.dumps(v, default=str)} |" for k, v in sorted(flat.items())]
        self.writer.add_text("config", "\n".join(lines), 0)

    def log_params(self, flat: Mapping[str, Any]) -> None:
        made = self._writer is not None
        self.params.update(flat)
        if made:
            self._config(flat)

    def restart(self, keep: Mapping[str, int]) -> None:
        """This attempt starts over (`Tracker.begin`): a new event file that purges the
        earlier ones from step 0 (TensorBoard's `purge_step`), then writes again the points
        up to `keep`, so the redone steps show this attempt's values."""
        if not _past(self.logged, keep):
            return
        kept = {tag: sorted((step, point) for step, point in points.items() if step <= keep[tag])
                for tag, points in _event_scalars(self.logdir).items() if tag in keep}
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.purge = 0
        for tag, points in kept.items():
            for step, (wall, value) in points:
                self.writer.add_scalar(tag, value, step, walltime=wall)
        self.writer.flush()
        self.logged = {tag: points[-1][0] for tag, points in kept.items() if points}

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.last[name] = value
            if not _logged_before(self.logged, name, step):
                self.writer.add_scalar(name, value, int(step))
        self.writer.flush()

    def log_batch_metric(self, name: str, value: float, step: int) -> None:
        if not _logged_before(self.logged, name, step):
            self.writer.add_scalar(name, value, int(step))

    def close(self, status: str) -> None:
        try:
            if self.params and self.last:
                # HParams dashboard: this run's params against its final epoch metrics (the
                # dashboard reads the metric series logged above under the same names).
                hp = {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
                      for k, v in self.params.items() if v is not None}
                metrics = {k: v for k, v in self.last.items() if math.isfinite(v)}
                fw = self.writer._get_file_writer()
                for summary in self._hparams(hp, metrics):
                    fw.add_summary(summary)
        finally:
            self.writer.close()


_SINKS = {"mlflow": _MlflowSink, "tensorboard": _TensorBoardSink}

# The MLflow sinks of this process that send to a server and are not closed: a SIGTERM ends
# the process without closing them: at_stop sends the metrics still waiting in each.
_open_sinks: "weakref.WeakSet[_MlflowSink]" = weakref.WeakSet()


def _send_waiting(timeout_s: float) -> None:
    """at_stop's hook: each open sink's waiting metrics sent, within `timeout_s` together."""
    deadline = time.monotonic() + timeout_s
    for sink in list(_open_sinks):
        sink.send_waiting(max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------ the tracker

def run_status(exc: BaseException | None) -> str:
    """MLflow run status for a trial that ended with `exc` (None: returned normally).

    Ray Tune ends a function trainable that should stop (its stop criterion was met, or the
    scheduler stopped it early) by raising SystemExit(0) inside `report()`: that is a
    finished trial, not a failed one."""
    if exc is None:
        return "FINISHED"
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        return "FINISHED"
    if isinstance(exc, KeyboardInterrupt):
        return "KILLED"
    return "FAILED"


class Tracker:
    """What a trial logs to; forwards to every backend that still works."""

    # Per-batch tensors (a step's loss) are held where they are and read to the host this
    # many at a time, and at the epoch's end: one device sync per chunk, not one per step.
    BATCH_READ = 64
    WAIT_MAX = 4 * BATCH_READ  # values held for a restore to come (`_unless_told`), at most

    def __init__(self, sinks: list[Any] | None = None, fresh_unless_told: Any = False) -> None:
        self._sinks = list(sinks or [])
        self._closed = False
        self._counts: dict[str, int] = {}  # steps for metrics logged without one
        self._last: dict[str, int] = {}  # the last step of each metric (a checkpoint keeps it)
        self._begun = False
        self._fresh = fresh_unless_told  # a bool, or a callable asked at the first metric
        self._held: list[tuple[str, Any, int]] = []  # per-batch (name, tensor or number, step)
        self._waiting: list[tuple[int, dict[str, float]]] = []  # logged before a restore to come

    @property
    def kinds(self) -> list[str]:
        return [s.kind for s in self._sinks]

    def _each(self, what: str, fn: Any, only_batch: bool = False) -> None:
        for sink in list(self._sinks):
            if only_batch and not sink.batch:
                continue
            try:
                fn(sink)
            except Exception as exc:  # noqa: BLE001 — never let tracking crash a trial
                self._drop(sink, what, exc)

    def _drop(self, sink: Any, what: str, exc: BaseException) -> None:
        _warn_once(sink.kind, what, exc)
        self._sinks.remove(sink)
        getattr(sink, "failed", lambda: None)()

    def begin(self, keep: Mapping[str, int] | None) -> None:
        """Where this attempt of the trial starts; said before its first metric, or that
        metric decides (`_unless_told`). None: at its own checkpoint; the run goes on and a
        step it has is not logged again (first write wins). A mapping: it starts over, from
        scratch ({}) or at another trial's checkpoint (PBT: the last step per metric that
        checkpoint saw); each metric's points after `keep` are replaced by this attempt's."""
        if self._begun:
            return
        self._begun = True
        if keep is not None:
            keep = {str(k): int(v) for k, v in keep.items()}
            self._each("starting over", lambda s: s.restart(keep))
        waiting, self._waiting = self._waiting, []
        for at, values in waiting:
            self._each("logging metrics", lambda s, at=at, values=values: s.log_metrics(values, at))

    def reported(self) -> None:
        """The trial reports: a restore that was to come has come by now, in any loop that
        restores before it trains. Still waited for (a loop that loads its checkpoint itself
        and names another `restore`, an EMA's): the attempt is its checkpoint's resume, and
        its metrics go out now, not when the trial closes (lost if it is killed)."""
        if not self._begun and (self._fresh() if callable(self._fresh) else self._fresh) == LATER:
            self.begin(None)

    def _unless_told(self) -> Any:
        """{} (from scratch) if `fresh_unless_told` says so, None (a resume), or LATER: until
        WAIT_MAX values wait (a loop that never iterates the loader that restores: a resume)."""
        fresh = self._fresh() if callable(self._fresh) else self._fresh
        if fresh == LATER:
            return LATER if len(self._waiting) + len(self._held) < self.WAIT_MAX else None
        return {} if fresh else None

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = flatten(params)
        self._each("logging parameters", lambda s: s.log_params(flat))

    def _step(self, name: str, step: int | None) -> int:
        """`step`, or for a metric logged without one: how often it was logged before."""
        count = self._counts.get(name, 0)
        self._counts[name] = count + 1
        at = count if step is None else int(step)
        self._last[name] = max(self._last.get(name, -1), at)
        return at

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if not self._sinks:
            return
        self.read_held()
        flat: dict[str, Any] = {}
        for name, value in metrics.items():
            if isinstance(value, Mapping):  # a group (hpoc's `perf`): `perf/train_s`, a
                flat.update((f"{name}/{k}", v) for k, v in value.items())  # section in TensorBoard
            else:
                flat[name] = value
        by_step: dict[int, dict[str, float]] = {}
        for name, value in flat.items():
            try:
                number = _float(value)
            except (TypeError, ValueError):
                continue  # not a number (a string, a list): nothing to plot
            by_step.setdefault(self._step(name, step), {})[name] = number
        if not self._begun:
            keep = self._unless_told()
            if keep is LATER:  # sent once the restore says where this attempt starts
                self._waiting += by_step.items()
                return
            self.begin(keep)
        for at, values in by_step.items():
            self._each("logging metrics", lambda s: s.log_metrics(values, at))

    def log_metric(self, name: str, value: Any, step: int | None = None) -> None:
        self.log_metrics({name: value}, step)

    def steps(self) -> dict[str, int]:
        """How often each metric was logged: the trial's checkpoint keeps it, so that a
        resumed trial's step-less metrics go on from there (`continue_steps`)."""
        return dict(self._counts)

    def last_steps(self) -> dict[str, int]:
        """The last step of each metric so far (a checkpoint keeps it: where an exploiting
        trial that restarts from it keeps the points of its own run, `begin`)."""
        return dict(self._last)

    def continue_steps(self, counts: Mapping[str, int], last: Mapping[str, int] | None = None) -> None:
        # never back: an itwinai loop took its counts on before the restore and logged since
        for mine, theirs in ((self._counts, counts), (self._last, last or {})):
            for k, v in theirs.items():
                mine[str(k)] = max(mine.get(str(k), int(v)), int(v))

    def log_item(self, kind: str, item: Any, name: str) -> None:
        """`self.log(item, name, kind=...)` of a kind other than metrics and params: to the
        loggers that take it (MLflow: artifact, torch, dict, text, figure, image), said once
        per kind when none does."""
        taken = False
        for sink in list(self._sinks):
            try:
                taken = getattr(sink, "log_item", lambda *a: False)(kind, item, name) or taken
            except tracking_send.Gone as exc:  # not the item's fault: its server stopped answering
                self._drop(sink, f"logging {kind}", exc)
            except Exception as exc:  # noqa: BLE001 — one bad item (a missing file) keeps the logger
                taken = True
                if f"item-error:{kind}" not in _warned:
                    _warned.add(f"item-error:{kind}")
                    log.warning("%s could not log %s %r: %s: %s", sink.kind, kind, name, type(exc).__name__, exc)
        if self._sinks and not taken and f"item:{kind}" not in _warned:
            _warned.add(f"item:{kind}")
            log.warning("self.log(..., kind=%r) is not logged: %s take(s) metrics and params%s", kind,
                        " and ".join(self.kinds), "" if "mlflow" not in self.kinds else
                        " (MLflow also artifact, torch, dict, text, figure and image)")

    def log_batch_metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Per-batch values: only for loggers with log_freq "batch" (others would drown). A
        one-value tensor is copied where it is (the caller may change it in place) and read
        with the others held (`BATCH_READ`)."""
        if not any(s.batch for s in self._sinks):
            return
        if hasattr(value, "detach") and hasattr(value, "numel"):
            if value.numel() != 1:
                return  # not one number
            self._held.append((name, value.detach().reshape(()).clone(), self._step(name, step)))
            if len(self._held) >= self.BATCH_READ:
                self.read_held()
            return
        try:
            number = _float(value)
        except (TypeError, ValueError):
            return
        self._held.append((name, number, self._step(name, step)))  # after the tensors before it
        if not any(hasattr(v, "detach") for _, v, _ in self._held):
            self.read_held()

    def read_held(self) -> None:
        """Send the held per-batch values to the loggers: one host read per device."""
        if not self._held:
            return
        keep = None if self._begun else self._unless_told()  # before the held are counted out
        if keep is LATER:
            return  # read once the restore says where this attempt starts
        held, self._held = self._held, []
        values = [v for _, v, _ in held]
        by_device: dict[Any, list[int]] = {}
        for i, value in enumerate(values):
            if hasattr(value, "detach"):  # a tensor: torch is imported already
                by_device.setdefault(value.device, []).append(i)
        try:
            for slots in by_device.values():
                import torch

                for i, number in zip(slots, torch.stack([values[i] for i in slots]).tolist()):
                    values[i] = float(number)
        except Exception as exc:  # noqa: BLE001 — a device gone bad: its values are lost
            if "held" not in _warned:
                _warned.add("held")
                log.warning("%d per-batch value(s) could not be read (%s: %s); not logged",
                            len(held), type(exc).__name__, exc)
            return
        if not self._begun:
            self.begin(keep)
        for (name, _, at), number in zip(held, values):
            self._each("logging batch metrics",
                       lambda s, name=name, number=number, at=at: s.log_batch_metric(name, number, at),
                       only_batch=True)

    def close(self, status: str = "FINISHED") -> None:
        if self._closed:
            return
        self._closed = True
        if not self._begun and (self._waiting or self._held):
            self.begin(None)  # the restore to come never came: its own checkpoint's attempt
        self.read_held()
        self._each("closing", lambda s: s.close(status))
        self._sinks = []

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> None:
        self.close(run_status(exc))


def open_loggers(plan: Mapping[str, Any], trial_name: str, config: Mapping[str, Any] | None,
                 rank: int, trial_index: int | None = None,
                 parent_run_id: str | None = None, fresh_unless_told: Any = False) -> Tracker:
    """The trial's tracker: logs `config` as params right away; a no-op off rank 0.
    `fresh_unless_told` (or what it returns, asked at the first metric): an attempt not told
    where it starts (`Tracker.begin`) before its first metric starts from scratch."""
    if rank != 0 or not plan.get("loggers"):
        return Tracker()
    sinks = []
    for logger in plan["loggers"]:
        sink_cls = _SINKS.get(logger.get("kind"))
        if sink_cls is None:
            continue
        try:
            sinks.append(sink_cls(plan, logger, trial_name, trial_index, parent_run_id))
        except Exception as exc:  # noqa: BLE001
            _warn_once(logger.get("kind", "?"), "starting", exc)
    tracker = Tracker(sinks, fresh_unless_told)
    if config:
        tracker.log_params(config)
    return tracker
