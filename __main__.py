"""``python -m comfyui_imgedit``: the headless command line (see cli.py)."""

import os
import sys

from .cli import main

if __name__ == "__main__":
    code = main()
    if code == 130:
        # Ctrl-C: a request still in flight (a synchronous upload) must not hold the exit until it times
        # out; the journal's records are on disk and claims of a dead process are taken over at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
