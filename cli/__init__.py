"""`lstm-pipeline`: one click group; each command imports the layer it drives when it runs."""
