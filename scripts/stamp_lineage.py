"""Record, in a data folder's MANIFEST.json, each entry's ``build`` and each derived entry's ``derived_from`` (the
parent's file and content hash; toolkit.zoo.lineage). Idempotent: recorded values are kept; run once on manifests
written before the zoo stamped them (``scripts/gpu_zoo.py --merge`` and the zoo's own entries now do).

    python scripts/stamp_lineage.py                 # data/MANIFEST.json
    python scripts/stamp_lineage.py --data OUT/data --check    # exit 1 if anything is unstamped, change nothing

Exit 2, changing nothing, on a lineage problem (a derived entry's recorded parent hash no longer matches its file, a
parent missing or of another build), printed as an error line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when toolkit is not installed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data", help="the data folder holding MANIFEST.json (default data)")
    p.add_argument("--check", action="store_true", help="report what would change, change nothing (exit 1 if any)")
    a = p.parse_args(argv)
    from toolkit.caches.io import CacheError
    from toolkit.zoo.lineage import stamp
    from toolkit.zoo.manifest import stamp_manifest

    data = Path(a.data)
    if not (data / "MANIFEST.json").is_file():  # stamp_manifest would start an empty one
        raise SystemExit(f"{data / 'MANIFEST.json'}: no such manifest; give --data the folder that holds it")
    try:
        if a.check:
            entries = json.loads((data / "MANIFEST.json").read_text())["caches"]
            changed = stamp(entries, data)
            print(f"{len(changed)} of {len(entries)} entries would be stamped" + (f": {changed}" if changed else ""))
            return 1 if changed else 0
        changed = stamp_manifest(data)
    except (ValueError, CacheError, OSError) as e:  # a lineage problem: the manifest is left as it was
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"stamped {len(changed)} entries of {data / 'MANIFEST.json'}" + (f": {changed}" if changed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
