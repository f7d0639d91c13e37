"""``python -m comfyui_imgedit.sandbox [--port N] [--key K] [--job-delay S] [--sync-delay S]``.

Starts the loopback sandbox and prints the lines to paste into the shell that starts ComfyUI, so
the provider nodes talk to it instead of the real services (no credits spent, no key needed).
"""

from __future__ import annotations

import argparse
import sys
import time

from .simulator import DEFAULT_KEY, SandboxServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comfyui_imgedit.sandbox",
                                     description="Offline stand-in for Dezgo, SD API v3, ModelsLab v6 and ImagePipeline.")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 = any free port; default 8765)")
    parser.add_argument("--key", default=DEFAULT_KEY, help=f"the fake key every service accepts (default {DEFAULT_KEY})")
    parser.add_argument("--job-delay", type=float, default=2.0,
                        help="seconds a queued job (ModelsLab, SD API, ImagePipeline) runs (default 2)")
    parser.add_argument("--sync-delay", type=float, default=1.0, help="seconds Dezgo takes to answer (default 1)")
    args = parser.parse_args(argv)
    try:
        server = SandboxServer(key=args.key, port=args.port, job_delay=args.job_delay, sync_delay=args.sync_delay)
        server.start()
    except OSError as error:
        print(f"could not listen on 127.0.0.1:{args.port} ({error.strerror}); try --port 0", file=sys.stderr)
        return 1
    print(f"# ImgEdit sandbox listening on {server.url} (Ctrl-C to stop)", file=sys.stderr)
    print("# paste these lines into the shell that starts ComfyUI:", file=sys.stderr)
    print(server.exports(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
