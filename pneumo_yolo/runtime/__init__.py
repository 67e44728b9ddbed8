"""Where and how the networks run: Ultralytics set up offline (:mod:`.offline`), ``--device`` (:mod:`.devices`), ``--model`` (:mod:`.weights`)."""
