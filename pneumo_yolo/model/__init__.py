"""The detector: offline Ultralytics set-up (:mod:`.offline`), weights, training, prediction and its RSNA validation."""
