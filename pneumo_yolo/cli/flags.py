"""From a settings field to the flag that set it: the library's errors name fields, the command line names flags.

>>> from ..settings import SettingError
>>> flag_message(SettingError("overrides", "expected key=value", value="'lr0'"))
"--set 'lr0': expected key=value"
>>> flag_message(SettingError("save_raw", "not a .csv or .parquet file", value="raw.txt"))
'--save-raw raw.txt: not a .csv or .parquet file'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import SettingError

FLAGS = {
    "overrides": "--set",
    "arch_options": "--set",
    "classifiers": "--classifier",
    "devices": "--device",
    "dataset_imgsz": "the dataset's size (convert --imgsz; give train --imgsz to change it)",
}
"""The fields whose flag is not ``--`` and the field's name with dashes."""


def flag(field: str) -> str:
    """The flag of a settings field: ``save_raw`` → ``--save-raw``, and the exceptions of :data:`FLAGS`."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def flag_message(error: SettingError) -> str:
    """``error``'s message, naming the flag where the library names the field."""
    return error.named(flag(error.field), flag)
