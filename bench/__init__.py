"""`lstm-pipeline bench`: runner x form x provider x threads, each runtime in its own worker process."""
