"""Data: tasks and splits (:mod:`.tasks`), text-to-text sources (:mod:`.text2text`), prompt sets for causal
LMs (:mod:`.prompts`) and provenance (:mod:`.provenance`). Imports no torch.
"""

# the package's face: what the module of the same name held before the layout by concern
from .tasks import (  # noqa: F401
    AGNEWS_CAL,
    AGNEWS_TEST,
    CAL_FRACTION,
    CAL_MAX,
    DEFAULT_SPLIT_SEED,
    SPLITS,
    TASKS,
    DataError,
    DataNotFound,
    SplitData,
    TaskSpec,
    combine_fingerprint,
    default_data_dir,
    dev_halves,
    fingerprint_files,
    get_task,
    hub_offline,
    join_text,
    load_split,
    read_source,
    sha256_file,
    split_indices,
)
