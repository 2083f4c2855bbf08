"""Video and image I/O (torch-free): decode, encode, padding, scene cuts, frame timing."""
