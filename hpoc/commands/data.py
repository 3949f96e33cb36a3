"""`hpoc data fetch NAME --root DIR`: download a known dataset on a machine with internet.

Compute nodes usually have no internet; fetch datasets on a login node into a directory
the jobs can read, then point the study's getter at it. `hpoc data list` shows what is known.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any, Callable

from hpoc.idx import IDX_FILES, fashion_raw_problem, idx_problem

HELP = "download a known dataset (on a login node; compute nodes have no internet)"

# Seconds a download may wait on the network: torchvision's urlopen has no timeout, so behind a
# firewall that drops packets, or a proxy that accepts and never answers, it waited forever.
TIMEOUT = 30.0


def _idx_dataset(cls_name: str, folder: str) -> Callable[[str], str]:
    def fetch(root: str) -> str:
        import torchvision.datasets

        raw = os.path.join(root, folder, "raw")
        paths = [os.path.join(raw, n) for n in IDX_FILES]
        # torchvision keeps a file that exists, then fails reading it (or trains on it)
        stale = [p for p in paths if os.path.exists(p) and idx_problem(p)]
        if folder == "FashionMNIST" and all(map(os.path.exists, paths)) and fashion_raw_problem(raw):
            stale = paths  # MNIST's files under Fashion-MNIST's names
        for path in stale:
            os.remove(path)
        for train in (True, False):
            getattr(torchvision.datasets, cls_name)(root, train=train, download=True)
        bad = [p for p in (idx_problem(os.path.join(raw, n)) for n in IDX_FILES) if p]
        if bad:
            raise OSError("; ".join(bad))
        return raw
    return fetch


def _digits(root: str) -> str:
    from sklearn.datasets import load_digits

    load_digits()  # bundled with scikit-learn: nothing to download
    return "bundled with scikit-learn: nothing to fetch (--root is not used)"


# name -> (description, fetch(root) -> where it is)
DATASETS: dict[str, tuple[str, Callable[[str], str]]] = {
    "fashion-mnist": ("Zalando Fashion-MNIST, 70,000 28x28 images (torchvision layout, 30 MB)",
                      _idx_dataset("FashionMNIST", "FashionMNIST")),
    "mnist": ("MNIST handwritten digits, 70,000 28x28 images (torchvision layout, 12 MB)",
              _idx_dataset("MNIST", "MNIST")),
    "digits": ("scikit-learn's 1,797 8x8 digits (bundled)", _digits),
}
BUNDLED = {"digits"}  # shipped with a library: nothing is written under --root
# The library each fetch imports, for the hint when this Python lacks it.
LIBRARY = {"fashion-mnist": "torchvision", "mnist": "torchvision", "digits": "scikit-learn"}


def dataset_name(given: str) -> str:
    """The known dataset `given` names as torchvision's class or a getter's argument would
    (`FashionMNIST`, `fashion_mnist`, `MNIST`), else `given` as it is (argparse refuses it)."""
    plain = "".join(c for c in given.lower() if c.isalnum())
    return next((name for name in DATASETS if name.replace("-", "") == plain), given)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    fetch = sub.add_parser("fetch", help="download a dataset into --root")
    fetch.add_argument("name", type=dataset_name, choices=sorted(DATASETS), metavar="NAME",
                       help="dataset: " + ", ".join(sorted(DATASETS)))
    fetch.add_argument("--root", required=True, metavar="DIR",
                       help="directory to put it in (the getter's `root`; `~` and $VARS expand)")
    sub.add_parser("list", help="list the datasets hpoc can fetch")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, (text, _) in sorted(DATASETS.items()):
            print(f"{name:15} {text}")
        return 0
    return fetch(args.name, args.root)


def fetch(name: str, root: str, out: Any = None, err: Any = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from hpoc.compiler.values import expand_vars

    # As the getters and `storage.path` read it: `--root '$SCRATCH/x'` is where a getter looks.
    expanded, unset = expand_vars(root)
    if unset:
        print(f"hpoc data: error: --root uses `{unset}`, which is not set here\n"
              "  = help: set it, or write the path out", file=err)
        return 1
    root = os.path.abspath(expanded)
    try:
        if name not in BUNDLED:
            os.makedirs(root, exist_ok=True)
    except OSError as exc:  # no network would not help: say so before trying one
        print(f"hpoc data: error: cannot make the directory {root}: {exc.strerror or exc}\n"
              "  = help: give --root a directory this user can write (or create)", file=err)
        return 1
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT)
    try:
        where = DATASETS[name][1](root)
    except ImportError as exc:  # not the network's fault: this Python lacks the library
        print(f"hpoc data: error: cannot fetch `{name}`: {exc}\n"
              f"  = help: install {LIBRARY[name]} for this Python (pip install {LIBRARY[name]})", file=err)
        return 1
    except (RuntimeError, OSError) as exc:
        # torchvision lists every mirror it tried; keep the last line of each attempt short.
        detail = " ".join(str(exc).split())
        print(f"hpoc data: error: cannot fetch `{name}` into {root}: {detail}\n"
              "  = help: run this on a machine with internet access (a login node), "
              "then copy the directory where the jobs can read it", file=err)
        return 1
    finally:
        socket.setdefaulttimeout(previous)
    print(f"{name}: {where}" if name in BUNDLED else f"{name}: ready in {where}", file=out)
    return 0
