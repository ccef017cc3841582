"""metrics of fairbench."""
