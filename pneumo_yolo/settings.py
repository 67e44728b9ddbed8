"""The one error of a setting that cannot work: the library names the field, the command line its flag.

Settings objects (``TrainSettings``, ``PredictSettings``, ``ConvertSettings``, ``Devices``…) are
built once, at the edge, and checked in one place. A setting they refuse raises
:class:`SettingError`, which names the field (``imgsz``, ``overrides``); ``pneumo_yolo.cli`` turns
that into the flag the user typed (``--imgsz``, ``--set``).

A problem may name another field as ``{field:NAME}``, which the command line also turns into its flag.

>>> str(SettingError("imgsz", "must be at least 32", value=16))
'imgsz 16: must be at least 32'
>>> SettingError("imgsz", "must be at least 32", value=16).named("--imgsz")
'--imgsz 16: must be at least 32'
>>> error = SettingError("overrides", "'epochs' has a setting of its own: use {field:epochs}", value="epochs=3")
>>> str(error), error.named("--set", lambda field: "--" + field)
("overrides epochs=3: 'epochs' has a setting of its own: use epochs", "--set epochs=3: 'epochs' has a setting of its own: use --epochs")
>>> SettingError("model", "is required").named("--model")
'--model is required'
"""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_IMGSZ = 4096
"""The largest ``imgsz`` of every command: a whole radiograph at full resolution (a 43 cm detector
at 0.1 mm pixels is about 4,300 pixels; RSNA's images are 1,024). A model at 4,096 px does 64 times
the work of one at 512 and holds about 1.3 GB per image on the CPU (docs/predict.md), so a larger
size is a typo, not a plan."""


_OTHER_FIELD = re.compile(r"\{field:(\w+)\}")


class SettingError(ValueError):
    """A setting that cannot work: ``field`` names it, ``value`` (optional) is what was given, ``problem`` says why."""

    def __init__(self, field: str, problem: str, *, value: object = None) -> None:
        self.field, self.problem, self.value = field, problem, value
        super().__init__(field, problem)

    def named(self, name: str, other: Callable[[str], str] = str) -> str:
        """The message with the setting called ``name`` (its flag, on the command line), and each other field ``other(field)``.

        Without a value the problem follows the name (``--model is required``); with one, a colon does.
        """
        problem = _OTHER_FIELD.sub(lambda match: other(match.group(1)), self.problem)
        return f"{name} {problem}" if self.value is None else f"{name} {self.value}: {problem}"

    def __str__(self) -> str:
        return self.named(self.field)

    def __reduce__(self) -> tuple:
        """Pickled whole, so that an error raised in a worker process keeps its field (exceptions pickle their args only)."""
        return _restore, (type(self), self.field, self.problem, self.value)


def _restore(cls: type[SettingError], field: str, problem: str, value: object) -> SettingError:
    error = cls.__new__(cls)
    SettingError.__init__(error, field, problem, value=value)
    return error
