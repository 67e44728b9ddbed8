"""DICOM in and out: :mod:`.read` decodes radiographs for convert and predict, :mod:`.write` writes RSNA-format files."""
