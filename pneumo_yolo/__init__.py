"""pneumo-yolo: RSNA pneumonia detection with Ultralytics YOLO."""

__version__ = "0.1.0"
