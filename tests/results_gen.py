"""Write real Ray Tune experiments for the results/report tests (run as a script).

    python tests/results_gen.py SPEC.json

SPEC is a list of runs: {"storage", "name", "num_samples", "seed", "progress_log"?}; they share
one local Ray instance (num_cpus=2) to keep start-up cost down.

Runs a tiny ASHA study whose trials report train_loss/val_loss/val_accuracy per epoch;
trials with batch_size 128 raise at epoch 3, poor learning rates get stopped at rung 2.
Then writes summary.json the way the runtime does (status, config, metrics, epochs, error).
"""

import json
import math
import os
import sys
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

EPOCHS = 6


def trainable(config):
    from ray import tune

    lr, dropout = config["optimizer"]["lr"], config["dropout"]
    for epoch in range(config["epochs"]):
        if config["batch_size"] == 128 and epoch == 2:
            raise RuntimeError("loss diverged (nan) at epoch 3")
        time.sleep(0.05)
        val = 0.5 / (1 + epoch) + 0.3 * abs(math.log10(lr) + 2.5) + 0.1 * dropout
        tune.report({"train_loss": 0.9 * val, "val_loss": val, "val_accuracy": 1 - val / 2})


def run(storage, name, num_samples, seed, progress_log=None):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    callbacks = []
    if progress_log:
        from hpoc.runtime.progress import Progress, tune_callback

        stream = open(progress_log, "w", encoding="utf-8")
        progress = Progress(total=num_samples, metric="val_loss", mode="min", stream=stream,
                            min_interval_s=0.0)
        callbacks.append(tune_callback(progress))
    space = {
        "batch_size": tune.choice([32, 64, 128]),
        "optimizer": {"name": tune.choice(["adam", "sgd"]), "lr": tune.loguniform(1e-4, 1e-1)},
        "dropout": tune.uniform(0.0, 0.5),
        "epochs": EPOCHS,
    }
    started = time.time()
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"CPU": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_loss", mode="min", num_samples=num_samples, max_concurrent_trials=2,
            search_alg=BasicVariantGenerator(random_state=seed),
            scheduler=ASHAScheduler(max_t=EPOCHS, grace_period=2, reduction_factor=2)),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0,
                                  callbacks=callbacks),
    )
    grid = tuner.fit()
    if progress_log:
        progress.close()
        stream.close()
    trials = []
    for result in grid:
        metrics = dict(result.metrics or {})
        trials.append({
            "trial_id": metrics.get("trial_id") or os.path.basename(result.path).split("_")[1],
            "status": "ERROR" if result.error else "TERMINATED",
            "config": result.config,
            "metrics": {k: metrics[k] for k in ("train_loss", "val_loss", "val_accuracy")
                        if k in metrics},
            "epochs": metrics.get("training_iteration", 0),
            "error": str(result.error) if result.error else None,
            "path": result.path,
        })
    ok = [t for t in trials if t["status"] == "TERMINATED" and "val_loss" in t["metrics"]]
    best = min(ok, key=lambda t: t["metrics"]["val_loss"]) if ok else None
    counts = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    summary = {
        "study": "fmnist", "shard": 0, "plan_hash": None,
        "metrics": [{"name": "val_loss", "mode": "min"}],
        "num_trials": len(trials), "status_counts": counts,
        "best": best and {k: best[k] for k in ("trial_id", "config", "metrics", "epochs")},
        "trials": trials, "wall_s": round(time.time() - started, 3),
    }
    with open(os.path.join(storage, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)


def main(spec_file):
    import ray

    with open(spec_file, encoding="utf-8") as fh:
        runs = json.load(fh)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for spec in runs:
            run(**spec)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
