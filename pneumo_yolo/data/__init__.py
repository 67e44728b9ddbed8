"""The data: the RSNA label CSVs (:mod:`.labels`), the patient split (:mod:`.split`) and the converted dataset (:mod:`.dataset`)."""
