"""The throwaway Orthanc of the PACS tests (pneumo_yolo/pacs/orthanc.py): start, REST helpers, restart, stop by PID."""

from __future__ import annotations

import os
import socket

import pydicom
import pytest

from pneumo_yolo.pacs.orthanc import Modality, Orthanc, OrthancError, config

from .conftest import make_rsna_folder, require_orthanc


def test_config_is_private_and_loopback_only(tmp_path):
    settings = config(tmp_path, 18042, 14242, "ORTHANC", {"pneumo": Modality("PNEUMOYOLO", 14243)}, 2)
    assert settings["RemoteAccessAllowed"] is False and settings["DicomAlwaysAllowStore"] is False
    assert settings["DicomCheckModalityHost"] is True
    assert settings["DicomModalities"] == {"pneumo": {"AET": "PNEUMOYOLO", "Host": "127.0.0.1", "Port": 14243}}
    assert settings["StorageDirectory"].startswith(str(tmp_path))


def test_upload_find_fetch_restart_and_stop(orthanc, tmp_path):
    folder = make_rsna_folder(tmp_path / "rsna", n=2)
    paths = sorted(folder.images.glob("*.dcm"))
    ids = [orthanc.upload(path) for path in paths]
    assert sorted(orthanc.find("Instance", {"Modality": "CR"})) == sorted(ids)
    assert len(orthanc.studies()) == len(paths)
    (study,) = orthanc.find("Study", {"StudyInstanceUID": pydicom.dcmread(paths[0]).StudyInstanceUID})
    assert [item["ID"] for item in orthanc.instances(study)] == [ids[0]]
    assert orthanc.instance_file(ids[0]) == paths[0].read_bytes()
    assert orthanc.echo("nobody") is False
    with pytest.raises(OrthancError, match=r"POST /instances: HTTP 400"):
        orthanc.request("POST", "/instances", b"not a DICOM file", "application/dicom")
    orthanc.set_modality("node", Modality("NODE", 1))
    pid = orthanc.process.pid
    orthanc.stop()
    with pytest.raises(OrthancError):
        orthanc.get("/system")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    orthanc.start()
    assert len(orthanc.studies()) == len(paths) and "node" in orthanc.get("/modalities")


def test_with_overwrite_a_copy_counts_as_a_new_instance(tmp_path):
    require_orthanc()
    (path,) = sorted(make_rsna_folder(tmp_path / "rsna", n=0).images.glob("*.dcm"))
    with Orthanc(tmp_path / "orthanc", overwrite=True) as server:
        first = server.upload(path)
        _, since = server.new_instances()
        assert server.upload(path) == first
        assert server.new_instances(since)[0] == [first]
        server.delete_everything()
        assert server.get("/instances") == []


def test_a_port_taken_before_the_first_start_is_replaced(tmp_path):
    require_orthanc()
    server = Orthanc(tmp_path / "orthanc")
    taken = server.dicom_port
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", taken))
        squatter.listen()
        with server:
            assert server.dicom_port != taken and server.get("/system")["DicomPort"] == server.dicom_port


def test_a_missing_binary_is_named(tmp_path):
    with pytest.raises(OrthancError, match="not installed"):
        Orthanc(tmp_path, binary=tmp_path / "Orthanc").start()
