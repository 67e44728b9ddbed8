"""The PACS node: ``pneumo-yolo listen`` receives radiographs by C-STORE and returns results; ``send`` pushes files."""
