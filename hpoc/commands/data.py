"""`hpoc data fetch NAME --root DIR`: download a known dataset on a machine with internet.

Compute nodes usually have no internet; fetch datasets on a login node into a directory
the jobs can read, then point the study's getter at it. `hpoc data list` shows what is known.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

HELP = "download a known dataset (on a login node; compute nodes have no internet)"


def _fashion_mnist(root: str) -> str:
    from torchvision.datasets import FashionMNIST

    for train in (True, False):
        FashionMNIST(root, train=train, download=True)
    return os.path.join(root, "FashionMNIST", "raw")


def _mnist(root: str) -> str:
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(root, train=train, download=True)
    return os.path.join(root, "MNIST", "raw")


def _digits(root: str) -> str:
    from sklearn.datasets import load_digits

    load_digits()  # bundled with scikit-learn: nothing to download
    return "(bundled with scikit-learn; nothing to fetch)"


# name -> (description, fetch(root) -> where it is)
DATASETS: dict[str, tuple[str, Callable[[str], str]]] = {
    "fashion-mnist": ("Zalando Fashion-MNIST, 70,000 28x28 images (torchvision layout, 30 MB)",
                      _fashion_mnist),
    "mnist": ("MNIST handwritten digits, 70,000 28x28 images (torchvision layout, 12 MB)", _mnist),
    "digits": ("scikit-learn's 1,797 8x8 digits (bundled)", _digits),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    fetch = sub.add_parser("fetch", help="download a dataset into --root")
    fetch.add_argument("name", choices=sorted(DATASETS), metavar="NAME",
                       help="dataset: " + ", ".join(sorted(DATASETS)))
    fetch.add_argument("--root", required=True, metavar="DIR",
                       help="directory to put it in (the getter's `root`)")
    sub.add_parser("list", help="list the datasets hpoc can fetch")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, (text, _) in sorted(DATASETS.items()):
            print(f"{name:15} {text}")
        return 0
    return fetch(args.name, args.root)


def fetch(name: str, root: str, out: Any = None, err: Any = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    root = os.path.abspath(root)
    try:
        os.makedirs(root, exist_ok=True)
        where = DATASETS[name][1](root)
    except (RuntimeError, OSError) as exc:
        # torchvision lists every mirror it tried; keep the last line of each attempt short.
        detail = " ".join(str(exc).split())
        print(f"hpoc data: error: cannot fetch `{name}` into {root}: {detail}\n"
              "  = help: run this on a machine with internet access (a login node), "
              "then copy the directory where the jobs can read it", file=err)
        return 1
    print(f"{name}: ready in {where}", file=out)
    return 0
