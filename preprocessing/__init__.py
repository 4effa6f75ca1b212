"""Data preparation: read each source's labels, run the detect/ path on every image, write feather chunks."""
