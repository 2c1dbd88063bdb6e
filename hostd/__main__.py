import importlib
import os
import sys

import hostd


def _installed_elsewhere() -> bool:
    """Does hostd come from somewhere other than the current directory?"""
    origin = getattr(hostd, "__file__", None)
    return origin is None or os.path.dirname(os.path.dirname(origin)) != sys.path[0]


# `python -m` puts the current directory first on sys.path; unless hostd itself comes from
# there, what is found there (a stray psutil.py, a folder named hostd) must not shadow hostd's
# own imports.
if sys.path and sys.path[0] == os.getcwd() and _installed_elsewhere():
    del sys.path[0]
    if getattr(hostd, "__file__", None) is None:  # a folder named hostd made it a namespace
        del sys.modules["hostd"]
        hostd = importlib.import_module("hostd")

from hostd.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
