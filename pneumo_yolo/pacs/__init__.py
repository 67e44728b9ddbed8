"""The PACS node: ``pneumo-yolo listen`` receives chest radiographs and returns results; ``pneumo-yolo send`` pushes files.

How a hospital uses it: the PACS (Orthanc, dcm4chee...) sends images to the node's AE title,
the node returns one SR per image (plus one GSPS where it found boxes) into that image's study,
and the model never runs inside the PACS.

Design, one module per job:

- :mod:`.addresses`: ``AE@HOST:PORT`` (a destination) and ``AE@HOST`` (an allowed caller).
- :mod:`.node`: the storage SCP (pynetdicom). An association from a caller not on
  ``--allow`` is rejected (with none given, everyone is); so is any association while the
  spool's disk is below ``--min-free-mb`` (transient, "local limit exceeded"). Only CR, DX and
  Secondary Capture (modality CR or DX) images are kept; other storage classes (CT...) get
  0x0122, oversized files 0xA700, malformed ones 0xC000; SR and presentation states, our own
  results among them, are answered with success and ignored, so a PACS routing rule that
  sends a study back cannot start a loop. Each accepted file goes straight to the spool and
  the C-STORE is answered at once.
- :mod:`.spool`: the durable queue. Files are named by SOP Instance UID (never a patient
  attribute) and a SQLite record holds each image's state: ``queued`` → ``predicted`` →
  ``delivered`` (or ``failed``), with delivery attempts and the next retry time. The record
  outlives the files, so an image sent again makes no new result. Every step commits before
  removing the files it no longer needs: after kill -9 a restart resumes, and each accepted
  image gets exactly one result.
- :mod:`.worker`: one loop with the models loaded once (:class:`~pneumo_yolo.predict.process.PredictorProcess`,
  ``predict``'s very code and settings, so the boxes equal ``predict``'s) predicts queued
  images in batches, writes the SR/GSPS (:mod:`pneumo_yolo.dicom.results`, whose UIDs derive
  from the source's SOP Instance UID and a fingerprint of the models and post-processing: a
  result delivered twice is the same object), then delivers them by C-STORE (``--return-to``)
  or STOW-RS (``--stow``). A destination that is down is retried after 2, 4, 8 ... s (at most
  5 min apart) and served when it returns; nothing is dropped.
- :mod:`.service`: ``listen`` itself: spool, models, SCP, worker; SIGTERM or Ctrl-C finishes
  the current batch and exits 0.
- :mod:`.store`, :mod:`.stow`, :mod:`.send`: C-STORE with one presentation context per transfer
  syntax (a JPEG Baseline image is sent as it is), STOW-RS with dicomweb-client (credentials
  from ``$PNEUMO_YOLO_STOW_AUTH`` or the file ``$PNEUMO_YOLO_STOW_AUTH_FILE`` names, never the
  command line), and ``send``, which reports a status per file.
- :mod:`.tls`: DICOM TLS with mutual certificates (``--tls-cert``, ``--tls-key``, ``--tls-ca``),
  for ``listen`` (callers without a certificate from the CA are refused; results go out over
  TLS too) and for ``send``.
"""
