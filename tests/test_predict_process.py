"""The node's models in a process of their own: what loading them raises is the caller's, and nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from pneumo_yolo.nets.detector import DetectorError
from pneumo_yolo.predict.device import PredictSettings
from pneumo_yolo.predict.process import PredictorProcess
from pneumo_yolo.runtime.devices import Devices


def test_what_loading_the_models_raises_is_raised_in_the_caller_and_the_process_is_gone(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    with pytest.raises(DetectorError, match=f"--weights {missing}: no such file"):
        PredictorProcess(PredictSettings(weights=(missing,)), Devices.parse("cpu"))
    left = [
        child for child in psutil.Process().children() if child.status() == psutil.STATUS_ZOMBIE or child.is_running()
    ]
    assert not [child for child in left if "spawn_main" in " ".join(child.cmdline())]
