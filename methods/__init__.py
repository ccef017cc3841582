"""methods of fairbench."""
