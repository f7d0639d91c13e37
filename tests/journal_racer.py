"""A process that makes journaled ModelsLab calls on command, for the cross-process journal tests.

    python journal_racer.py JOURNAL_DIR GO_DIR ROUNDS

Prints ``ready`` once imported, then for each round r waits for ``GO_DIR/go-r`` and runs the same
fixed-seed edit (seed 100 + r) through run_edit, printing one JSON line: the result's checksum and
what the journal did. Service URLs and the key come from the environment (the test's sandbox).
"""

import hashlib
import json
import sys
import time
from pathlib import Path

from remote_support import fast_http, picture

from comfyui_imgedit.nodes.core.edit import run_edit
from comfyui_imgedit.nodes.core.journal import Journal
from comfyui_imgedit.nodes.core.providers.modelslab import ModelsLabClient


def main() -> None:
    journal, go, rounds = Journal(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    image = picture(256, 256)
    print("ready", flush=True)
    for r in range(rounds):
        while not (go / f"go-{r}").exists():
            time.sleep(0.002)
        out = run_edit(ModelsLabClient(http=fast_http("modelslab")), image, prompt="a red barn", strength=0.5,
                       seed=100 + r, journal=journal)
        print(json.dumps({"round": r, "sha": hashlib.sha256(out.images.numpy().tobytes()).hexdigest(),
                          "journal": out.info.get("journal", []), "warnings": out.info["warnings"]}), flush=True)


if __name__ == "__main__":
    main()
