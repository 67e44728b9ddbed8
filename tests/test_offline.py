"""Offline and private Ultralytics set-up, and model arguments that would need a download."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest
from typer.testing import CliRunner

from pneumo_yolo.cli import app
from pneumo_yolo.runtime import offline
from pneumo_yolo.runtime.devices import cpu_count
from pneumo_yolo.runtime.weights import ModelSource, WeightsError, download_weights, resolve_model


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every way out to the network raise, and record the attempts."""
    attempts: list[str] = []

    def refuse(name: str):
        def raiser(*args, **kwargs):
            attempts.append(name)
            raise OSError(f"test: network is off ({name})")

        return raiser

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    return attempts


class TestEnvironment:
    def test_user_variables_cannot_turn_anything_back_on(self, monkeypatch, pneumo_home):
        monkeypatch.setenv("YOLO_OFFLINE", "0")
        monkeypatch.setenv("YOLO_AUTOINSTALL", "true")
        monkeypatch.setenv("YOLO_CONFIG_DIR", "/somewhere/else")
        monkeypatch.setenv("ULTRALYTICS_API_KEY", "ul_" + "0" * 40)
        assert offline.configure() == pneumo_home
        assert os.environ["YOLO_OFFLINE"] == "1"
        assert os.environ["YOLO_AUTOINSTALL"] == "false"
        assert os.environ["YOLO_CONFIG_DIR"] == str(pneumo_home)
        assert "ULTRALYTICS_API_KEY" not in os.environ

    def test_fonts_are_matplotlibs_dejavu(self, pneumo_home):
        import matplotlib

        offline.configure()
        dejavu = (Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf").read_bytes()
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            assert (pneumo_home / "Ultralytics" / name).read_bytes() == dejavu

    def test_home_comes_from_env_else_user_cache(self, monkeypatch, tmp_path):
        monkeypatch.setenv(offline.ENV_HOME, str(tmp_path / "h"))
        assert offline.home_dir() == tmp_path / "h"
        assert offline.weights_dir() == tmp_path / "h" / "weights"
        monkeypatch.delenv(offline.ENV_HOME)
        assert offline.home_dir() == Path(platformdirs.user_cache_dir("pneumo-yolo", appauthor=False)).resolve()

    @pytest.mark.parametrize(
        ("value", "allowed"), [(None, False), ("", False), ("0", False), ("1", True), ("True", True)]
    )
    def test_downloads_only_on_opt_in(self, monkeypatch, value, allowed):
        if value is None:
            monkeypatch.delenv(offline.ENV_ONLINE, raising=False)
        else:
            monkeypatch.setenv(offline.ENV_ONLINE, value)
        assert offline.downloads_allowed() is allowed

    def test_refuses_an_ultralytics_set_up_elsewhere(self, monkeypatch, tmp_path):
        offline.import_ultralytics()
        monkeypatch.setenv("YOLO_CONFIG_DIR", os.environ["YOLO_CONFIG_DIR"])  # restored afterwards
        monkeypatch.setenv(offline.ENV_HOME, str(tmp_path / "other"))
        with pytest.raises(offline.ImportedElsewhereError, match="imported before pneumo-yolo could set it up"):
            offline.configure()

    def test_a_notebook_that_imported_ultralytics_first_is_told_how_to_fix_it(self, tmp_path):
        """Ultralytics imported first (as ``from ultralytics import YOLO`` in a notebook), then pneumo-yolo."""
        code = (
            "import ultralytics\n"
            "from pneumo_yolo.runtime.offline import ImportedElsewhereError, import_ultralytics\n"
            "try:\n    import_ultralytics()\nexcept ImportedElsewhereError as error:\n    print(error)\n"
        )
        env = {
            **os.environ,
            "YOLO_CONFIG_DIR": str(tmp_path / "user"),
            "YOLO_OFFLINE": "1",
            offline.ENV_HOME: str(tmp_path / "ours"),
        }
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert (
            "restart the kernel" in result.stdout
            and "offline.configure()` before `from ultralytics import YOLO`" in result.stdout
        )
        assert str(tmp_path / "user") in result.stdout


class TestImportedUltralytics:
    def test_settings_are_private_and_in_our_home(self, pneumo_home):
        offline.import_ultralytics()
        from ultralytics import utils
        from ultralytics.utils.events import events

        assert utils.SETTINGS_FILE == pneumo_home / "Ultralytics" / "settings.json"
        assert not utils.ONLINE and not utils.AUTOINSTALL
        assert not events.enabled
        settings = utils.SETTINGS
        assert settings["sync"] is False and settings["api_key"] == ""
        assert not any(settings[k] for k in ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb"))
        assert settings["weights_dir"] == str(pneumo_home / "weights")

    def test_cpu_device_uses_every_core(self):
        offline.import_ultralytics()
        import torch
        from ultralytics.utils.torch_utils import select_device

        torch.set_num_threads(1)
        select_device("cpu", verbose=False)
        assert torch.get_num_threads() == cpu_count()

    def test_amp_check_stays_off_the_network_offline(self, monkeypatch, tmp_path, no_network):
        monkeypatch.delenv(offline.ENV_ONLINE, raising=False)
        offline.import_ultralytics()
        import torch
        import ultralytics.engine.trainer as trainer_module
        from ultralytics import utils

        assert utils.WEIGHTS_DIR == offline.weights_dir()
        monkeypatch.setattr(utils, "WEIGHTS_DIR", tmp_path)  # where the unguarded check would download to

        model = torch.nn.Linear(1, 1, device="meta")  # neither CPU nor MPS: check_amp goes for its checkpoint
        assert trainer_module.check_amp(model) is True
        assert no_network == []
        assert trainer_module.check_amp.__wrapped__(model) is True  # unguarded: it tries to download
        assert no_network, "the unguarded check should have tried the network"

    def test_amp_check_on_the_cpu_is_ultralytics_own(self, monkeypatch, no_network):
        monkeypatch.delenv(offline.ENV_ONLINE, raising=False)
        offline.import_ultralytics()
        import torch
        import ultralytics.engine.trainer as trainer_module

        assert trainer_module.check_amp(torch.nn.Linear(1, 1)) is False  # no AMP on the CPU
        assert no_network == []

    def test_amp_check_runs_where_downloads_are_allowed(self, monkeypatch):
        import torch

        monkeypatch.setenv(offline.ENV_ONLINE, "1")
        calls = []
        checked = offline.offline_safe_amp_check(lambda model: calls.append(model) or False)
        model = torch.nn.Linear(1, 1, device="meta")
        assert checked(model) is False and calls == [model]


class TestResolveModel:
    def test_config_names_pass_through(self, tmp_path):
        assert resolve_model("yolo11n.yaml", weights_dir=tmp_path, allow_download=False) == ModelSource("yolo11n.yaml")

    def test_local_files_become_absolute(self, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path)
        (tmp_path / "mine.pt").write_bytes(b"x")
        (tmp_path / "cfg.yaml").write_text("nc: 1\n")
        source = resolve_model("mine.pt", weights_dir=tmp_path / "w", allow_download=False)
        assert source == ModelSource(str(tmp_path / "mine.pt"))
        assert resolve_model("cfg.yaml", weights_dir=tmp_path / "w", allow_download=False).is_config

    def test_names_are_found_in_the_weights_folder(self, tmp_path):
        (tmp_path / "yolo11s.pt").write_bytes(b"x")
        source = resolve_model("yolo11s.pt", weights_dir=tmp_path, allow_download=False)
        assert source == ModelSource(str(tmp_path / "yolo11s.pt"))

    def test_missing_weights_offline_say_what_to_do(self, tmp_path):
        with pytest.raises(WeightsError) as error:
            resolve_model("yolo11s.pt", weights_dir=tmp_path / "w", allow_download=False)
        message = str(error.value)
        assert str(tmp_path / "w") in message
        assert "--model yolo11s.yaml" in message and "--online" in message

    def test_missing_weights_online_are_downloaded_into_the_weights_folder(self, tmp_path):
        source = resolve_model("yolo11s.pt", weights_dir=tmp_path, allow_download=True)
        assert source == ModelSource(str(tmp_path / "yolo11s.pt"), download=True)

    @pytest.mark.parametrize(
        ("model", "problem"),
        [
            ("runs/old/weights/best.pt", "checkpoint not found"),
            ("configs/mine.yaml", "model config not found"),
            ("yolo11s", "give a checkpoint (.pt) or a model config (.yaml)"),
            ("model.onnx", "give a checkpoint (.pt) or a model config (.yaml)"),
        ],
    )
    def test_bad_arguments(self, tmp_path, model, problem):
        with pytest.raises(WeightsError, match=re.escape(problem)):
            resolve_model(model, weights_dir=tmp_path, allow_download=True)

    def test_local_sources_need_no_download(self, tmp_path):
        assert download_weights(ModelSource(str(tmp_path / "a.pt"))) == str(tmp_path / "a.pt")


def test_train_with_downloadable_name_fails_before_importing_ultralytics(monkeypatch, tmp_path, no_network):
    """Offline, ``--model yolo11s.pt`` fails at once: no Ultralytics import (2 s here), no connection."""
    monkeypatch.delenv(offline.ENV_ONLINE, raising=False)
    monkeypatch.setenv(offline.ENV_HOME, str(tmp_path / "home"))

    def must_not_import(**kwargs):
        raise AssertionError("Ultralytics imported before the weights were checked")

    monkeypatch.setattr("pneumo_yolo.train.yolo.import_ultralytics", must_not_import)
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: opacity}\n")
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--model", "yolo11s.pt"])
    assert result.exit_code == 2
    assert "'yolo11s.pt' are not on this machine" in result.output
    assert "--model yolo11s.yaml" in result.output
    assert str(tmp_path / "home" / "weights") in result.output
    assert no_network == []
