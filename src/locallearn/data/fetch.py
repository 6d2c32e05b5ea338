"""Make sure a dataset is on this machine: `python -m locallearn.data.fetch NAME [--data-dir DIR]`.

Used by the Makefile before training. Looks the dataset up and downloads it if needed;
for Fashion-MNIST, when that fails and we are root on a Debian-like system, installs
the `dataset-fashion-mnist` package. Prints the folder; exits 1 with one line otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from locallearn.data.locate import DEBIAN_PACKAGES, REMOTE_FILES, find_dataset
from locallearn.errors import DataError


def ensure_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding `name`, after downloading it or installing its Debian package if needed."""
    try:
        return find_dataset(name, data_dir, download=True)
    except DataError:
        package = DEBIAN_PACKAGES.get(name)
        if package is None or not can_apt_install() or not apt_install(package):
            raise
    return find_dataset(name, data_dir, download=False)


def can_apt_install() -> bool:
    return shutil.which("apt-get") is not None and os.geteuid() == 0


def apt_install(package: str) -> bool:
    """`apt-get install -y package`, retried once after `apt-get update`; True on success."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def run(*args: str) -> bool:
        print(f"locallearn: running apt-get {' '.join(args)}", file=sys.stderr)
        return subprocess.run(["apt-get", *args], env=env, stdout=sys.stderr, check=False).returncode == 0

    return run("install", "-y", package) or (run("update") and run("install", "-y", package))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m locallearn.data.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=tuple(REMOTE_FILES))
    parser.add_argument("--data-dir", default=None, help="look here first (same as locallearn train --data-dir)")
    args = parser.parse_args(argv)
    try:
        print(ensure_dataset(args.name, args.data_dir))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
