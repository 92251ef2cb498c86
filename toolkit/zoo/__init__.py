"""The model zoo: recipes and the build (torch side, :mod:`.build`, :mod:`.recipes`), and the manifest with its
checks (analysis side, :mod:`.manifest`). Importing this package loads no torch."""

from toolkit.zoo.cpu import cpu_spent, cpu_table, cpu_totals
from toolkit.zoo.manifest import (
    check_manifest,
    generation_table,
    merge_manifest,
    readme_table,
    seed_table,
    stage_table,
    update_manifest,
)

__all__ = ["check_manifest", "cpu_spent", "cpu_table", "cpu_totals", "generation_table", "merge_manifest",
           "readme_table", "seed_table", "stage_table", "update_manifest"]
