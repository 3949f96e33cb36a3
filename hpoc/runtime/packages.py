"""Python packages a study needs that are not installed here, and what to tell the user.

A need is `(modules, pip package)`: any one of the modules will do (`tensorboard` or
`tensorboardX`); the package is what installs it (`bayes_opt` comes from
`bayesian-optimization`). Checked with `find_spec`: nothing is imported."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping, Sequence

Need = tuple[Sequence[str], str]


def missing(needs: Mapping[str, Need]) -> dict[str, str]:
    """name -> pip package, for each need none of whose modules is installed."""
    return {name: package for name, (modules, package) in needs.items()
            if modules and all(importlib.util.find_spec(m) is None for m in modules)}


def install_hint(what: str, packages: Iterable[str], alternative: str = "") -> str:
    """`what` needs PACKAGES, not installed, and the pip command (for the compute nodes too)."""
    packages = list(dict.fromkeys(packages))
    noun = "package" if len(packages) == 1 else "packages"
    return (f"{what} needs the Python {noun} {', '.join(packages)}, not installed in this "
            f"environment\n  help: pip install {' '.join(packages)} (on the compute nodes' "
            f"environment too){alternative}")
