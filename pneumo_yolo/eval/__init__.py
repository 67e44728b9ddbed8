"""From detections to a score: post-processing, raw detection tables, submissions, the RSNA metric and tuning."""
