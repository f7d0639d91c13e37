"""``python -m comfyui_imgedit`` and the ``comfyui-imgedit`` script: the headless command line (cli/)."""

import os
import sys
from typing import Optional, Sequence

from .cli import main as cli_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    code = cli_main(argv)
    if code == 130:
        # Ctrl-C: a request still in flight (a synchronous upload) must not hold the exit until it times
        # out; the journal's records are on disk and claims of a dead process are taken over at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
